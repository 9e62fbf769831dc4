"""pull: incidents changed since the cursor, upserted idempotently with their history.

An incident is keyed by (source, external id). A record identical to the
stored one (same fingerprint) or older than it changes nothing; a changed
one bumps the incident's ``revision`` so plan and evaluate look at it again.
When the source reports a full history it replaces the stored one; when it
reports none, qloop keeps the history it observes (a new entry each time
the category changes).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.connector import ScopeCount
from core.loop import rejects
from core.loop._bulk import chunks, insert_returning_ids, insert_rows, update_by_id
from core.loop.common import StepResult, connector_state, finish_run, log, resumable, start_run
from core.loop.tracking import record_tracking_start
from core.privacy import email_key, phone_key
from core.records import IncidentRecord, StatusChange
from core.runtime import Runtime
from core.store.models import Incident, Nonconformity, StatusEvent, SyncRun
from core.timeutil import to_utc


def fingerprint(rec: IncidentRecord) -> str:
    """A digest of everything qloop reads from a record (not its raw payload)."""
    doc = {
        "key": rec.key,
        "title": rec.title,
        "priority": rec.priority,
        "status": rec.status,
        "category": str(rec.category),
        "created": rec.created_at.isoformat(),
        "service": rec.service,
        "customer": rec.customer,
        "contact": [rec.contact.name, rec.contact.phone, rec.contact.email],
        "first_response": _iso(rec.first_response_at),
        "resolved": _iso(rec.resolved_at),
        "closed": _iso(rec.closed_at),
        "sla": rec.source_sla,
        "history": [[h.at.isoformat(), str(h.category), h.status] for h in rec.history],
    }
    return hashlib.sha256(_ENCODER.encode(doc).encode()).hexdigest()


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)
"""What ``json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)`` builds per call."""


def _utc(value: datetime) -> datetime:
    """:func:`to_utc`, skipping the conversion for a value that is already whole-second UTC."""
    if value.tzinfo is UTC and not value.microsecond:
        return value
    return to_utc(value)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _fields(rec: IncidentRecord) -> dict[str, Any]:
    return {
        "key": rec.key,
        "title": rec.title,
        "service": rec.service,
        "customer": rec.customer,
        "contact_name": rec.contact.name,
        "contact_phone": rec.contact.phone,
        "contact_email": rec.contact.email,
        "phone_key": phone_key(rec.contact.phone),
        "email_key": email_key(rec.contact.email),
        "priority": rec.priority,
        "status": rec.status,
        "category": str(rec.category),
        "created_at": _utc(rec.created_at),
        "updated_at": _utc(rec.updated_at),
        "first_response_at": rec.first_response_at and _utc(rec.first_response_at),
        "resolved_at": rec.resolved_at and _utc(rec.resolved_at),
        "closed_at": rec.closed_at and _utc(rec.closed_at),
        "source_sla": dict(rec.source_sla),
        "raw": dict(rec.raw),
    }


def _event_rows(incident_id: int, history: Sequence[StatusChange]) -> list[dict[str, Any]]:
    return [
        {
            "incident_id": incident_id,
            "seq": i,
            "at": _utc(h.at),
            "status": h.status,
            "category": str(h.category),
            "observed": False,
        }
        for i, h in enumerate(history)
    ]


def upsert_records(
    session: Session, source: str, records: Sequence[IncidentRecord], now: Any, result: StepResult
) -> None:
    """Insert or update one batch of records (the caller commits).

    Set-based: one ``IN`` query reads what is stored, new incidents go in
    with one multi-row insert, changed ones with one executemany update, and
    their history entries with one insert.
    """
    latest: dict[str, IncidentRecord] = {}
    for rec in records:  # one batch may hold the same incident twice: keep the newest
        prev = latest.get(rec.external_id)
        if prev is None or rec.updated_at >= prev.updated_at:
            latest[rec.external_id] = rec
    result.counts["seen"] += len(records)
    if not latest:
        return
    existing: dict[str, Any] = {}
    for chunk in chunks(latest):
        for row in session.execute(
            select(
                Incident.id,
                Incident.external_id,
                Incident.fingerprint,
                Incident.updated_at,
                Incident.category,
                Incident.revision,
            ).where(Incident.source == source, Incident.external_id.in_(chunk))
        ):
            existing[row.external_id] = row
    new_rows: list[dict[str, Any]] = []
    new_history: dict[str, Sequence[StatusChange]] = {}
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    replaced: list[int] = []
    observed: list[tuple[int, IncidentRecord]] = []
    for ext_id, rec in latest.items():
        digest = fingerprint(rec)
        inc = existing.get(ext_id)
        if inc is None:
            new_rows.append(
                {
                    "source": source,
                    "external_id": ext_id,
                    "fingerprint": digest,
                    "ingested_at": now,
                    "changed_at": now,
                    "revision": 1,
                    "planned_revision": 0,
                    "evaluated_revision": 0,
                    **_fields(rec),
                }
            )
            new_history[ext_id] = rec.history or (
                StatusChange(rec.created_at, rec.category, rec.status),
            )
            result.counts["created"] += 1
            continue
        if inc.fingerprint == digest or to_utc(rec.updated_at) < inc.updated_at:
            result.counts["unchanged"] += 1
            continue
        updates.append(
            {
                "id": inc.id,
                **_fields(rec),
                "fingerprint": digest,
                "changed_at": now,
                "revision": inc.revision + 1,
            }
        )
        result.counts["updated"] += 1
        if rec.history:
            replaced.append(inc.id)
            events.extend(_event_rows(inc.id, rec.history))
        elif str(rec.category) != inc.category:
            observed.append((inc.id, rec))
    if observed:
        last_seq = _last_seqs(session, [inc_id for inc_id, _ in observed])
        for inc_id, rec in observed:
            events.append(
                {
                    "incident_id": inc_id,
                    "seq": (last_seq.get(inc_id) or 0) + 1,
                    "at": _utc(rec.updated_at),
                    "status": rec.status,
                    "category": str(rec.category),
                    "observed": True,
                }
            )
    update_by_id(session, Incident, updates)
    ids = insert_returning_ids(session, Incident, new_rows, "external_id")
    for ext_id, history in new_history.items():
        events.extend(_event_rows(ids[ext_id], history))
    for id_chunk in chunks(replaced):
        session.execute(delete(StatusEvent).where(StatusEvent.incident_id.in_(id_chunk)))
    insert_rows(session, StatusEvent, events)


def _last_seqs(session: Session, incident_ids: Sequence[int]) -> dict[int, int]:
    """The greatest history ``seq`` stored per incident."""
    last: dict[int, int] = {}
    for chunk in chunks(incident_ids):
        last.update(
            session.execute(
                select(StatusEvent.incident_id, func.max(StatusEvent.seq))
                .where(StatusEvent.incident_id.in_(chunk))
                .group_by(StatusEvent.incident_id)
            ).all()
        )
    return last


def skip_own_tickets(
    session: Session, source: str, records: Sequence[IncidentRecord]
) -> tuple[list[IncidentRecord], int]:
    """``records`` without qloop's own nonconformity tickets in ``source`` (SPEC §11).

    The ticket ledger says which tickets qloop created in this source
    (``Nonconformity.ticket_ref`` with ``ticket_target`` = the source); a
    record whose external id or key is one of them is left out, even when it
    slipped past the source's own filter. Returns the kept records and how
    many were left out.
    """
    refs = {r.external_id for r in records} | {r.key for r in records}
    if not refs:
        return list(records), 0
    own: set[str] = set()
    for chunk in chunks(sorted(refs)):
        own.update(
            ref
            for ref in session.scalars(
                select(Nonconformity.ticket_ref).where(
                    Nonconformity.ticket_target == source, Nonconformity.ticket_ref.in_(chunk)
                )
            )
            if ref is not None
        )
    if not own:
        return list(records), 0
    kept = [r for r in records if r.external_id not in own and r.key not in own]
    return kept, len(records) - len(kept)


def check_first_sync_count(rt: Runtime, source: str, conn: object, run_id: int, read: int) -> None:
    """After a first sync, compare what was read with the tool's own count (SPEC §11).

    The count is stored in the run (``SyncRun.tool_count``); a difference is
    logged as a WARNING naming the source and both numbers. A source that
    cannot count (no :class:`ScopeCount`) is left unchecked.
    """
    if not isinstance(conn, ScopeCount):
        return
    try:
        tool = rt.call(conn.count_in_scope)
    except Exception as exc:  # the pull itself succeeded: a failed count must not undo it
        log.warning("pull %s: first sync read %d; the tool's count failed: %s", source, read, exc)
        return
    if tool is None:
        return
    with rt.db.session() as s:
        run = s.get(SyncRun, run_id)
        if run is not None:
            run.tool_count = tool
    if tool != read:
        log.warning(
            "pull %s: first sync read %d record(s) but the tool counts %d in scope "
            "(difference %+d): check the source's filter, rights and mapping",
            source, read, tool, read - tool,
        )  # fmt: skip
    else:
        log.info("pull %s: first sync read %d record(s), as the tool counts", source, read)


def pull(rt: Runtime, source: str) -> StepResult:
    """Pull incidents changed since the source's cursor; commit each batch with its cursor."""
    result = StepResult(f"pull {source}")
    conn = rt.source(source)
    run_id, cursor_before = start_run(rt, source, "pull")

    def load_cursor() -> str | None:
        with rt.db.session() as s:
            return connector_state(s, source).cursor

    def on_retry(exc: Exception, n: int) -> None:
        result.counts["retries"] += 1
        log.warning("pull %s: %s; resuming from the last cursor (restart %d)", source, exc, n)

    with rt.db.session() as s:
        pending = rejects.open_keys(s, source)
    # the records read, for the first sync's count: a restart may re-read a batch, so
    # they are counted distinct at the end; kept as 8-byte hashes of their ids, not
    # the ids (~100 bytes each in a set): a 64-bit collision in a month of a million
    # records (odds ~1e-8) would only show a count off by one in the warning
    read = array("q")
    first_sync = cursor_before is None
    skipped_at_source = 0
    error: str | None = None
    try:
        for batch in resumable(conn.pull, load_cursor, on_retry, rt.sleep):
            if first_sync:
                read.extend(hash(r.external_id) for r in batch.records)
                read.extend(hash(r.key) for r in batch.rejected)
            skipped_at_source += batch.skipped_own
            with rt.db.session() as s:
                records, own = skip_own_tickets(s, source, batch.records)
                upsert_records(s, source, records, rt.now(), result)
                rejects.resolve(s, source, pending, records, rt.now())
                rejected = rejects.store(s, source, batch.rejected, rt.now())
                connector_state(s, source).cursor = batch.cursor
            pending.update(r.key[:200] for r in batch.rejected)
            result.counts["rejected"] += rejected
            result.counts["skipped_own"] += own + batch.skipped_own
            rt.report(f"pull {source}", result.counts["seen"])
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        result.errors.append(error)
        log.error("pull %s failed: %s", source, error)
        raise
    finally:
        finish_run(rt, run_id, source, result, error)
        _record_skipped_own(rt, run_id, result.counts["skipped_own"])
    record_tracking_start(rt, source)  # the first successful pull starts tracking (§11)
    if first_sync:
        check_first_sync_count(rt, source, conn, run_id, len(set(read)) + skipped_at_source)
    return result


def _record_skipped_own(rt: Runtime, run_id: int, skipped: int) -> None:
    if not skipped:
        return
    with rt.db.session() as s:
        run = s.get(SyncRun, run_id)
        if run is not None:
            run.skipped_own = skipped
