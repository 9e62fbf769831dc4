"""Rejected source records: kept aside with their error so a source goes on past them.

A record that cannot be mapped (a status missing from the status map, a
date that is not one) used to stop its source until the mapping was fixed,
holding back every incident behind it. It is now recorded here, once per
(source, key), logged with its place, counted in the sync run, and listed
by ``qloop sources rejects`` and the API. A later version of the same
record that maps resolves it; after a mapping fix, ``qloop sources resync``
reads the source again so that unchanged records come back too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.loop.common import audit, connector_state
from core.records import IncidentRecord, Rejected
from core.runtime import Runtime
from core.store.models import RejectedRecord

log = logging.getLogger("qloop.loop")


def open_keys(session: Session, source: str) -> set[str]:
    """Keys of ``source``'s rejected records not yet resolved (usually none)."""
    stmt = select(RejectedRecord.key).where(
        RejectedRecord.source == source, RejectedRecord.resolved_at.is_(None)
    )
    return set(session.scalars(stmt))


def open_counts(session: Session) -> dict[str, int]:
    """Unresolved rejected records per source."""
    stmt = (
        select(RejectedRecord.source, func.count())
        .where(RejectedRecord.resolved_at.is_(None))
        .group_by(RejectedRecord.source)
    )
    return {source: int(n) for source, n in session.execute(stmt)}


def store(session: Session, source: str, rejected: Sequence[Rejected], now: datetime) -> int:
    """Record each rejected record of a batch, logging each; returns how many were new.

    ``times`` counts the versions rejected: reading the same version again
    (the overlap window, a retried page) only moves ``last_seen_at`` and
    is not counted.
    """
    if not rejected:
        return 0
    last = {r.key[:200]: r for r in rejected}  # the newest version of a key in a batch wins
    rows = session.scalars(
        select(RejectedRecord).where(
            RejectedRecord.source == source, RejectedRecord.key.in_(list(last))
        )
    )
    known = {row.key: row for row in rows}
    new = 0
    for key, rej in last.items():
        row = known.get(key)
        if row is None:
            log.warning("pull %s: record %s rejected: %s", source, key, rej.error)
            session.add(
                RejectedRecord(
                    source=source,
                    key=key,
                    field=rej.field[:200] if rej.field else None,
                    error=rej.error,
                    source_updated_at=rej.updated_at,
                    first_seen_at=now,
                    last_seen_at=now,
                    times=1,
                )
            )
            new += 1
            continue
        row.last_seen_at = now
        same = rej.updated_at is not None and rej.updated_at == row.source_updated_at
        if same and row.resolved_at is None and rej.error == row.error:
            continue  # the same version read again (overlap window, a retried page)
        log.warning("pull %s: record %s rejected again: %s", source, key, rej.error)
        row.error, row.field = rej.error, rej.field[:200] if rej.field else None
        row.source_updated_at = rej.updated_at or row.source_updated_at
        row.times, row.resolved_at = row.times + 1, None
        new += 1
    return new


def resolve(
    session: Session,
    source: str,
    pending: set[str],
    records: Iterable[IncidentRecord],
    now: datetime,
) -> None:
    """Mark resolved the pending keys that came back mapped in ``records``; updates ``pending``."""
    keys = (k for r in records for k in (r.key, r.external_id))
    resolve_keys(session, source, pending, keys, now)


def resolve_keys(
    session: Session, source: str, pending: set[str], keys: Iterable[str | None], now: datetime
) -> None:
    """Mark resolved the pending ``keys`` (now stored mapped); updates ``pending``."""
    if not pending:
        return
    fixed = {k for k in keys if k in pending}
    if not fixed:
        return
    session.execute(
        update(RejectedRecord)
        .where(RejectedRecord.source == source, RejectedRecord.key.in_(fixed))
        .values(resolved_at=now)
    )
    pending.difference_update(fixed)
    log.info("%s: %d rejected record(s) now map and are stored", source, len(fixed))


def listing(
    session: Session, source: str | None = None, resolved: bool = False
) -> list[RejectedRecord]:
    """Rejected records, newest first: the open ones, or with ``resolved`` every one."""
    stmt = select(RejectedRecord).order_by(RejectedRecord.last_seen_at.desc(), RejectedRecord.id)
    if source is not None:
        stmt = stmt.where(RejectedRecord.source == source)
    if not resolved:
        stmt = stmt.where(RejectedRecord.resolved_at.is_(None))
    return list(session.scalars(stmt))


def resync(rt: Runtime, source: str, actor: str) -> str | None:
    """Forget ``source``'s cursor so its next pull reads everything again; the old cursor.

    What is unchanged changes nothing (fingerprints); rejected records that
    now map are stored and resolved. Recorded in the audit log.
    """
    rt.source_config(source)  # an unknown source is a config error naming the valid ones
    with rt.db.session() as s:
        state = connector_state(s, source)
        before = state.cursor
        state.cursor = None
        audit(s, rt, "resync", "source", source, actor, cursor_before=before)
    log.info("source %s: cursor cleared by %s; the next pull reads it all again", source, actor)
    return before
