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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.orm import Session

from core.connector import ScopeCount
from core.gcfreeze import fewer_collections
from core.jsontext import JsonText
from core.loop import rejects
from core.loop._bulk import (
    SQLITE_VARIABLES,
    _insert_sql,
    _processors,
    chunks,
    insert_returning_ids,
    insert_rows,
    table_of,
    update_by_id,
)
from core.loop.common import (
    StepResult,
    connector_state,
    finish_run,
    log,
    resumable,
    set_cursor,
    start_run,
)
from core.loop.tracking import record_tracking_start
from core.privacy import email_key, phone_key
from core.records import IncidentRecord, StatusChange
from core.runtime import Runtime
from core.store.models import Incident, Nonconformity, StatusEvent, SyncRun
from core.timeutil import to_utc


def _fingerprint_doc(rec: IncidentRecord) -> dict[str, Any]:
    """Everything qloop reads from a record (not its raw payload), as the digest covers it."""
    return {
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


def fingerprint(rec: IncidentRecord) -> str:
    """A digest of everything qloop reads from a record (not its raw payload).

    The document is written by orjson (sorted keys, compact; instants,
    contact and history entries written by orjson itself); a document orjson
    refuses (keys that are not strings, integers beyond 64 bits) is written
    as :func:`legacy_fingerprint` writes it. The same record always gets the
    same digest.
    """
    doc = {
        "key": rec.key,
        "title": rec.title,
        "priority": rec.priority,
        "status": rec.status,
        "category": rec.category,
        "created": rec.created_at,
        "service": rec.service,
        "customer": rec.customer,
        "contact": rec.contact,
        "first_response": rec.first_response_at,
        "resolved": rec.resolved_at,
        "closed": rec.closed_at,
        "sla": rec.source_sla,
        "history": rec.history,
    }
    try:
        text = orjson.dumps(doc, default=str, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return legacy_fingerprint(rec)
    return hashlib.sha256(text).hexdigest()


def legacy_fingerprint(rec: IncidentRecord) -> str:
    """The digest qloop stored before :func:`fingerprint` used orjson (``json.dumps`` text).

    An incident stored by an older qloop keeps that digest until it changes:
    a record is unchanged when it matches either, so an upgrade does not make
    every stored incident look changed.
    """
    return _legacy_digest(_fingerprint_doc(rec))


def _legacy_digest(doc: dict[str, Any]) -> str:
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


_FIELD_NAMES = (
    "key", "title", "service", "customer", "contact_name", "contact_phone", "contact_email",
    "phone_key", "email_key", "priority", "status", "category", "created_at", "updated_at",
    "first_response_at", "resolved_at", "closed_at", "source_sla", "raw",
)  # fmt: skip
"""The incident columns a record sets, in the order of :func:`_field_values`."""
_NEW_NAMES = (
    "source", "external_id", "fingerprint", "ingested_at", "changed_at", "revision",
    "planned_revision", *_FIELD_NAMES,
)  # fmt: skip
"""The columns of a new incident's row, in the order :func:`upsert_records` builds it."""
_EVENT_NAMES = ("incident_id", "seq", "at", "status", "category", "observed")


def _field_values(rec: IncidentRecord) -> tuple[Any, ...]:
    contact = rec.contact
    return (
        rec.key,
        rec.title,
        rec.service,
        rec.customer,
        contact.name,
        contact.phone,
        contact.email,
        phone_key(contact.phone),
        email_key(contact.email),
        rec.priority,
        rec.status,
        str(rec.category),
        _utc(rec.created_at),
        _utc(rec.updated_at),
        rec.first_response_at and _utc(rec.first_response_at),
        rec.resolved_at and _utc(rec.resolved_at),
        rec.closed_at and _utc(rec.closed_at),
        dict(rec.source_sla),
        rec.raw if type(rec.raw) is JsonText else dict(rec.raw),  # stored as its text
    )


def _fields(rec: IncidentRecord) -> dict[str, Any]:
    return dict(zip(_FIELD_NAMES, _field_values(rec), strict=True))


def _event_rows(incident_id: int, history: Sequence[StatusChange]) -> list[tuple[Any, ...]]:
    return [
        (incident_id, i, _utc(h.at), h.status, str(h.category), False)
        for i, h in enumerate(history)
    ]


def _binder(
    conn: Connection, table: Table, names: Sequence[str]
) -> Callable[[Sequence[Any]], list[Any]]:
    """A row tuple in ``names`` order → its values as the driver takes them (each through
    its column type's bind processor, as SQLAlchemy converts it)."""
    active = [
        (i, p) for i, p in enumerate(_processors(table, names, conn.dialect)) if p is not None
    ]

    def bind(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i, process in active:
            values[i] = process(values[i])
        return values

    return bind


def _insert_incidents(session: Session, rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """Insert new incidents (tuples in :data:`_NEW_NAMES` order); their ids by external id.

    On SQLite the rows go to the driver as one multi-row ``INSERT … RETURNING``
    per page of bound values; elsewhere through :func:`insert_returning_ids`.
    """
    if not rows:
        return {}
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        dicts = [dict(zip(_NEW_NAMES, r, strict=True)) for r in rows]
        return insert_returning_ids(session, Incident, dicts, "external_id")
    table = table_of(Incident)
    bind = _binder(conn, table, _NEW_NAMES)
    ids: dict[str, int] = {}
    for page in chunks(rows, SQLITE_VARIABLES // len(_NEW_NAMES)):
        sql = _insert_sql(conn, table, _NEW_NAMES, len(page)) + " RETURNING id, external_id"
        params = tuple(chain.from_iterable(map(bind, page)))
        ids.update({k: i for i, k in conn.exec_driver_sql(sql, params)})
    return ids


def _insert_events(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Insert status events (tuples in :data:`_EVENT_NAMES` order) in one executemany."""
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        insert_rows(session, StatusEvent, [dict(zip(_EVENT_NAMES, r, strict=True)) for r in rows])
        return
    table = table_of(StatusEvent)
    procs = _processors(table, _EVENT_NAMES, conn.dialect)
    if any(p is not None for i, p in enumerate(procs) if i not in (2, 5)):
        bind = _binder(conn, table, _EVENT_NAMES)
        params = [tuple(bind(r)) for r in rows]
    else:  # only the instant and the flag are converted: one tuple per row, no loop
        at, flag = procs[2] or (lambda v: v), procs[5] or (lambda v: v)
        params = [(i, seq, at(t), status, cat, flag(o)) for i, seq, t, status, cat, o in rows]
    conn.exec_driver_sql(_insert_sql(conn, table, _EVENT_NAMES, 1), params)


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
    existing = _stored(session, source, list(latest))
    new_rows: list[tuple[Any, ...]] = []
    new_history: dict[str, Sequence[StatusChange]] = {}
    updates: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    replaced: list[int] = []
    observed: list[tuple[int, IncidentRecord]] = []
    for ext_id, rec in latest.items():
        digest = fingerprint(rec)
        inc = existing.get(ext_id)
        if inc is None:
            new_rows.append((source, ext_id, digest, now, now, 1, 0, *_field_values(rec)))
            new_history[ext_id] = rec.history or (
                StatusChange(rec.created_at, rec.category, rec.status),
            )
            result.counts["created"] += 1
            continue
        if (
            inc.fingerprint == digest
            or to_utc(rec.updated_at) < inc.updated_at
            or inc.fingerprint == legacy_fingerprint(rec)
        ):
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
            seq = (last_seq.get(inc_id) or 0) + 1
            events.append((inc_id, seq, _utc(rec.updated_at), rec.status, str(rec.category), True))
    update_by_id(session, Incident, updates)
    ids = _insert_incidents(session, new_rows)
    for ext_id, history in new_history.items():
        events.extend(_event_rows(ids[ext_id], history))
    for id_chunk in chunks(replaced):
        session.execute(delete(StatusEvent).where(StatusEvent.incident_id.in_(id_chunk)))
    _insert_events(session, events)


class _Stored(NamedTuple):
    """What :func:`upsert_records` reads of a stored incident."""

    id: int
    external_id: str
    fingerprint: str
    updated_at: datetime
    category: str
    revision: int


def _stored(session: Session, source: str, external_ids: Sequence[str]) -> dict[str, _Stored]:
    """The stored incidents of ``source`` among ``external_ids``, by external id.

    On SQLite the driver's own query (SQLAlchemy's compiled select and ORM rows
    cost ~1 ms a page of 100), ``updated_at`` read through its column type's
    result processor as the select does; elsewhere the select.
    """
    found: dict[str, _Stored] = {}
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    instant = _result_processor(conn) if sqlite else None
    for chunk in chunks(external_ids):
        if instant is not None:
            marks = ", ".join("?" * len(chunk))
            rows: Any = conn.exec_driver_sql(
                "SELECT id, external_id, fingerprint, updated_at, category, revision "
                f"FROM incident WHERE source = ? AND external_id IN ({marks})",
                (source, *chunk),
            )
            for i, ext, digest, updated, category, revision in rows:
                found[ext] = _Stored(i, ext, digest, instant(updated), category, revision)
            continue
        rows = session.execute(
            select(
                Incident.id,
                Incident.external_id,
                Incident.fingerprint,
                Incident.updated_at,
                Incident.category,
                Incident.revision,
            ).where(Incident.source == source, Incident.external_id.in_(chunk))
        )
        for row in rows:
            found[row.external_id] = _Stored(*row)
    return found


def _result_processor(conn: Connection) -> Callable[[Any], Any]:
    """How the select converts a stored ``incident.updated_at`` (identity when it does not)."""
    dialect = conn.dialect
    column = table_of(Incident).c.updated_at
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else (lambda value: value)


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
    conn = session.connection()
    for chunk in chunks(sorted(refs)):
        if conn.dialect.name == "sqlite":  # the driver's own query: a tenth of the cost
            marks = ", ".join("?" * len(chunk))
            found = conn.exec_driver_sql(
                "SELECT ticket_ref FROM nonconformity WHERE ticket_target = ? "
                f"AND ticket_ref IN ({marks})",
                (source, *chunk),
            ).scalars()
        else:
            found = session.scalars(
                select(Nonconformity.ticket_ref).where(
                    Nonconformity.ticket_target == source, Nonconformity.ticket_ref.in_(chunk)
                )
            )
        own.update(ref for ref in found if ref is not None)
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
        # one session for the pull (not one per batch), committed once per batch with
        # its cursor; a failed batch is rolled back and ends the pull as before
        with fewer_collections(), rt.db.sessions() as s:
            for batch in resumable(conn.pull, load_cursor, on_retry, rt.sleep):
                if first_sync:
                    read.extend(hash(r.external_id) for r in batch.records)
                    read.extend(hash(r.key) for r in batch.rejected)
                skipped_at_source += batch.skipped_own
                try:
                    records, own = skip_own_tickets(s, source, batch.records)
                    upsert_records(s, source, records, rt.now(), result)
                    rejects.resolve(s, source, pending, records, rt.now())
                    rejected = rejects.store(s, source, batch.rejected, rt.now())
                    set_cursor(s, source, batch.cursor)
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise
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
