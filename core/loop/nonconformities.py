"""raise: every finding becomes one nonconformity, and one ticket in the outbox (R5, R6).

The nonconformity's dedup key names the incident, the rule and the
resolution, so re-evaluating never raises it twice. The ticket is rendered
from the target source's mapping template and goes to the source the
incident came from (``push_to: source``) or a configured one.

A nonconformity follows the current findings (SPEC §10,
:mod:`core.loop.nc_history`): a finding whose severity, raised-at, deadline
or detail changed updates it (and comments its ticket); a finding that
disappears withdraws it (its unsent ticket is cancelled, a ticket in the
ITSM is commented and resolved); a withdrawn finding that comes back is
reinstated. A finding about a callback waits until its channel's outcomes
are collected (:mod:`core.loop.holdback`): its compliance record stays
unraised and is looked at again on the next cycle.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.loop._bulk import chunks, insert_returning_ids, insert_rows, table_of
from core.loop.common import Partition, StepResult, in_partition
from core.loop.holdback import Holdback
from core.loop.nc_history import History, why_withdrawn
from core.loop.outbox import outbox_row
from core.mapping import render_ticket
from core.runtime import Runtime
from core.states import NcState
from core.store.models import ComplianceRecord, Incident, Nonconformity, OutboxItem
from core.timeutil import parse_instant

BATCH = 500

DEFAULT_TICKET = {
    "title": "[qloop] {rule} ({severity}) on {incident_key}",
    "description": "qloop found a nonconformity on {incident_key}: {detail}\n"
    "Raised at {raised_at}; rectify by {deadline}.",
    "labels": ["qloop", "nonconformity"],
}


def dedup_key(inc: Incident, finding_key: str) -> str:
    return f"qloop:{inc.source}:{inc.external_id}:{finding_key}"


def ticket_payload(
    rt: Runtime, inc: Incident, target: str, f: dict[str, Any], key: str
) -> dict[str, Any]:
    tz = rt.policy_for_source(inc.source).calendar.tz
    values = {
        "rule": f["rule"],
        "severity": f["severity"],
        "incident_key": inc.key,
        "incident_title": inc.title,
        "detail": f["detail"],
        "raised_at": parse_instant(f["raised_at"]).astimezone(tz).isoformat(),
        "deadline": parse_instant(f["deadline"]).astimezone(tz).isoformat(),
        "service": inc.service or "",
        "customer": inc.customer or "",
    }
    template = rt.source_mapping(target).get("ticket") or DEFAULT_TICKET
    rendered = render_ticket(template, values)
    return {
        "dedup_key": key,
        "title": rendered.get("title", ""),
        "description": rendered.get("description", ""),
        "labels": list(rendered.get("labels", [])),
        "incident_external_id": inc.external_id,
        "incident_key": inc.key,
        "rule": f["rule"],
        "severity": f["severity"],
        "raised_at": f["raised_at"],
        "deadline": f["deadline"],
    }


LIVE = (NcState.OPEN, NcState.DEAD, NcState.TICKETED)
"""States of a nonconformity whose finding is expected to hold (withdrawn when it does not)."""


def _target(rt: Runtime, rec: ComplianceRecord, inc: Incident) -> str:
    push_to = rt.config.policies[rec.policy].push_to
    return inc.source if push_to == "source" else push_to


_RECORD = tuple(c for c in table_of(ComplianceRecord).c if c.name not in ("resolutions", "raised"))
"""The compliance record's columns raise reads (``resolutions`` only for a withdrawal)."""
_INCIDENT = (
    Incident.id,
    Incident.source,
    Incident.external_id,
    Incident.key,
    Incident.title,
    Incident.service,
    Incident.customer,
)
"""The incident columns a nonconformity and its ticket name."""
_NONCONFORMITY = tuple(table_of(Nonconformity).c)
_NAMES = {
    "record": tuple(c.name for c in _RECORD),
    "incident": tuple(c.key for c in _INCIDENT),
    "nonconformity": tuple(c.name for c in _NONCONFORMITY),
}
"""The column names of each read, in its order (rows become objects by ``zip``)."""


def _plain(kind: str, row: Any) -> SimpleNamespace:
    return SimpleNamespace(**dict(zip(_NAMES[kind], row, strict=True)))


def _records(
    s: Session, last_id: int, partition: Partition | None = None
) -> list[tuple[ComplianceRecord, Incident]]:
    """The next :data:`BATCH` unraised records after ``last_id`` (of incidents in
    ``partition``) with their incidents, as plain objects holding the columns read (not
    ORM instances: ~40 µs a pair less)."""
    recs = s.execute(
        select(*_RECORD)
        .where(ComplianceRecord.raised.is_(False), ComplianceRecord.id > last_id)
        .where(in_partition(ComplianceRecord.incident_id, partition))
        .order_by(ComplianceRecord.id)
        .limit(BATCH)
    ).all()
    if not recs:
        return []
    incidents: dict[int, Any] = {}
    for chunk in chunks(sorted({r.incident_id for r in recs})):
        for row in s.execute(select(*_INCIDENT).where(Incident.id.in_(chunk))):
            incidents[row.id] = _plain("incident", row)
    return [
        (cast("ComplianceRecord", _plain("record", r)), incidents[r.incident_id])
        for r in recs
        if r.incident_id in incidents  # as the join did
    ]


def raise_nonconformities(rt: Runtime, partition: Partition | None = None) -> StepResult:
    """Raise, update, withdraw and reinstate the nonconformities of records whose findings changed.

    A record whose findings all stand as nonconformities is marked raised; one
    with a finding held back for its channel stays unraised (next cycle).
    With ``partition`` ``(k, n)``, only the records of incidents whose
    ``id % n == k``: an incident's nonconformities, their history and ticket
    items are its own, so the n partitions may run at once
    (:func:`workers.jobs.raise_part`); should a whole raise overlap one, the
    unique keys (dedup key, revision, idempotency key) refuse a second copy.
    """
    result = StepResult("raise")
    records = table_of(ComplianceRecord)
    last_id = 0
    while True:
        with rt.db.session() as s:
            rows = _records(s, last_id, partition)
            if not rows:
                break
            last_id = rows[-1][0].id
            done = _raise_batch(s, rt, rows, result)
            for id_chunk in chunks(done):
                # on the table, not the mapped class: no ORM instance to keep in step
                s.execute(update(records).where(records.c.id.in_(id_chunk)).values(raised=True))
    return result


def _raise_batch(
    s: Session, rt: Runtime, rows: list[tuple[ComplianceRecord, Incident]], result: StepResult
) -> list[int]:
    """Bring the nonconformities of ``rows`` in line with their findings; the records done."""
    # per (incident, policy) only the newest record speaks; older versions are superseded
    newest: dict[tuple[int, str], tuple[ComplianceRecord, Incident]] = {}
    for rec, inc in rows:
        newest[(inc.id, rec.policy)] = (rec, inc)
    incident_ids = sorted({inc.id for _, inc in rows})
    stored: dict[str, Nonconformity] = {}
    by_incident: dict[int, list[Nonconformity]] = defaultdict(list)  # the stored ones, by id
    history = History(rt, s, result)
    for chunk in chunks(incident_ids):
        for row in s.execute(
            select(*_NONCONFORMITY)
            .where(Nonconformity.incident_id.in_(chunk))
            .order_by(Nonconformity.id)
        ):
            nc = history.watch(dict(zip(_NAMES["nonconformity"], row, strict=True)))
            stored[nc.dedup_key] = nc
            by_incident[nc.incident_id].append(nc)
    holdback = Holdback(s, list({inc.id: inc for _, inc in rows}.values()))
    done = [rec.id for rec, _ in rows if newest[(rec.incident_id, rec.policy)][0] is not rec]
    new_ncs: list[dict[str, Any]] = []
    tickets: list[tuple[str, dict[str, Any]]] = []
    changed: list[tuple[Nonconformity, dict[str, Any], Incident, str]] = []
    gone: list[tuple[Nonconformity, ComplianceRecord]] = []
    for rec, inc in newest.values():
        held = False
        wanted: set[str] = set()
        for f in rec.findings:
            key = dedup_key(inc, f["key"])
            wanted.add(key)
            found = stored.get(key)
            if found is not None and found.state != NcState.WITHDRAWN:
                changed.append((found, f, inc, "update"))
                continue
            channel = holdback.waits_for(inc.id, f)
            if channel is not None:
                held = True
                result.counts["held_for_collect"] += 1
                continue
            if found is not None:
                changed.append((found, f, inc, "reinstate"))
                continue
            nc_row, item = _new_nonconformity(rt, inc, rec, f, key)
            new_ncs.append(nc_row)
            tickets.append((key, item))
            # a later record of the batch sees it: its columns as attributes, not an ORM
            # instance (never added to the session either way; ~100 µs each to construct)
            stored[key] = cast("Nonconformity", SimpleNamespace(**nc_row))
            result.counts[f"raised_{f['severity']}"] += 1
        for known in by_incident.get(inc.id, ()):
            if known.policy == rec.policy and known.state in LIVE and known.dedup_key not in wanted:
                gone.append((known, rec))
        if not held:
            done.append(rec.id)
    history.load_tickets([nc.id for nc, *_ in changed] + [nc.id for nc, _ in gone])
    _load_resolutions(s, [rec for _, rec in gone])
    for nc, f, inc, action in changed:
        payload = ticket_payload(rt, inc, nc.ticket_target, f, nc.dedup_key)
        if action == "update":
            history.updated(nc, f, payload)
        else:
            history.reinstated(nc, f, payload)
    for nc, rec in gone:
        history.withdrawn(nc, why_withdrawn(nc, rec))
    ids = insert_returning_ids(s, Nonconformity, new_ncs, "dedup_key")
    insert_rows(s, OutboxItem, [{**item, "entity_id": ids[key]} for key, item in tickets])
    for key, _ in tickets:
        nc = stored[key]
        history.event(ids[key], 1, "raised", {}, nc.detail)
    history.write()
    return done


def _load_resolutions(s: Session, recs: list[ComplianceRecord]) -> None:
    """Read the ``resolutions`` of ``recs`` (what a withdrawal's reason needs) into them."""
    by_id = {rec.id: rec for rec in recs}
    for chunk in chunks(sorted(by_id)):
        for rec_id, resolutions in s.execute(
            select(ComplianceRecord.id, ComplianceRecord.resolutions).where(
                ComplianceRecord.id.in_(chunk)
            )
        ):
            by_id[rec_id].resolutions = resolutions


def _new_nonconformity(
    rt: Runtime, inc: Incident, rec: ComplianceRecord, f: dict[str, Any], key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nonconformity row of a finding and its ticket's outbox row (without entity id)."""
    now: datetime = rt.now()
    target = _target(rt, rec, inc)
    nc = {
        "dedup_key": key,
        "incident_id": inc.id,
        "rule": f["rule"],
        "resolution_key": f["key"].split("@", 1)[1],
        "severity": f["severity"],
        "raised_at": parse_instant(f["raised_at"]),
        "deadline": parse_instant(f["deadline"]),
        "detail": f["detail"],
        "evidence_ref": f.get("ref"),
        "policy": rec.policy,
        "policy_version": rec.policy_version,
        "state": NcState.OPEN,
        "ticket_target": target,
        "ticket_ref": None,
        "ticket_url": None,
        "ticket_status": None,
        "closed_at": None,
        "overdue": False,
        "created_at": now,
        "updated_at": now,
        "revision": 1,
        "withdrawn_at": None,
    }
    payload = ticket_payload(rt, inc, target, f, key)
    return nc, outbox_row(key=key, kind="ticket", target=target, payload=payload, now=now)
