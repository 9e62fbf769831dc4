"""Signed-out QA page sessions kept in the store (table ``web_session_end``).

Every ``qloop serve`` process reads the same table, so a session signed out
through one worker is refused by all of them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from core.runtime import Runtime
from core.store.models import WebSessionEnd


class StoredEndedSessions:
    """:class:`api.web.session.EndedSessions` on the runtime's database."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def end(self, sid: str, expires: datetime, now: datetime) -> None:
        with self._rt.db.session() as s:
            s.execute(delete(WebSessionEnd).where(WebSessionEnd.expires_at <= now))
            if s.get(WebSessionEnd, sid) is None:
                s.add(WebSessionEnd(sid=sid, expires_at=expires))
            s.commit()

    def ended(self, sid: str) -> bool:
        with self._rt.db.session() as s:
            found = s.execute(select(WebSessionEnd.sid).where(WebSessionEnd.sid == sid)).first()
            return found is not None
