"""Each API token's use goes to the audit log once per token and UTC day.

Who used which token, and when first each day, is what an auditor asks;
one row per request would bury the people's actions under machine traffic.
The first authenticated request of a token on a UTC day adds a
``token.use`` entry (its role and that request's method and path); later
ones that day add nothing. A process remembers the days it has seen and
asks the store once per token and day, so several API processes agree
(two starting the same second may both write one).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time

from sqlalchemy import select

from core.loop.common import audit
from core.runtime import Runtime
from core.store.models import AuditLog

ACTION = "token.use"


class TokenUse:
    """Records the first use of each token per UTC day."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, date]] = set()
        self._lock = threading.Lock()

    def record(self, rt: Runtime, name: str, role: str, method: str, path: str) -> None:
        """Audit the use of token ``name`` unless it was already audited today."""
        day = rt.now().astimezone(UTC).date()
        key = (name, day)
        with self._lock:
            if key in self._seen:
                return
        start = datetime.combine(day, time(), UTC)
        with rt.db.session() as s:
            earlier = s.scalar(
                select(AuditLog.id)
                .where(
                    AuditLog.action == ACTION,
                    AuditLog.actor == name,
                    AuditLog.at >= start,
                )
                .limit(1)
            )
            if earlier is None:
                audit(
                    s,
                    rt,
                    ACTION,
                    "token",
                    name,
                    actor=name,
                    role=role,
                    request=f"{method} {path}",
                )
        with self._lock:
            self._seen.add(key)
