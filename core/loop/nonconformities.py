"""raise: every finding becomes one nonconformity, and one ticket in the outbox (R5, R6).

The nonconformity's dedup key names the incident, the rule and the
resolution, so re-evaluating never raises it twice. The ticket is rendered
from the target source's mapping template and goes to the source the
incident came from (``push_to: source``) or a configured one. A finding that
disappears on recomputation (a late answer matched by QA, a corrected
history) withdraws its nonconformity: an unsent ticket is cancelled; a
ticket already in the ITSM stays there, and the audit log says so.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, defer

from core.loop._bulk import chunks, insert_returning_ids, insert_rows
from core.loop.common import StepResult, audit
from core.loop.outbox import enqueue, outbox_row
from core.mapping import render_ticket
from core.runtime import Runtime
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


def _ticket_payload(
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


def _withdraw(
    s: Session, rt: Runtime, inc: Incident, keep: set[str], policy: str, result: StepResult
) -> None:
    for nc in s.scalars(
        select(Nonconformity).where(
            Nonconformity.incident_id == inc.id,
            Nonconformity.policy == policy,
            Nonconformity.state.in_(("open", "dead", "ticketed")),
        )
    ):
        if nc.dedup_key in keep:
            continue
        _withdraw_one(s, rt, nc, result)
        _cancel_tickets(s, [nc.id])


def _withdraw_one(s: Session, rt: Runtime, nc: Nonconformity, result: StepResult) -> None:
    """Mark ``nc`` withdrawn and audit it (its unsent ticket is cancelled by the caller)."""
    nc.state, nc.updated_at = "withdrawn", rt.now()
    audit(
        s,
        rt,
        "nonconformity.withdraw",
        "nonconformity",
        nc.id,
        key=nc.dedup_key,
        ticket_left_in_itsm=nc.ticket_ref,
    )
    result.counts["withdrawn"] += 1


def _cancel_tickets(s: Session, nc_ids: list[int]) -> None:
    """Cancel the unsent ticket outbox items of withdrawn nonconformities."""
    for chunk in chunks(nc_ids):
        s.execute(
            update(OutboxItem)
            .where(
                OutboxItem.kind == "ticket",
                OutboxItem.entity_id.in_(chunk),
                OutboxItem.state.in_(("pending", "dead")),
            )
            .values(state="cancelled")
        )


def raise_nonconformities(rt: Runtime) -> StepResult:
    """Create the nonconformities of compliance records whose findings changed."""
    result = StepResult("raise")
    while True:
        with rt.db.session() as s:
            rows = list(
                s.execute(
                    select(ComplianceRecord, Incident)
                    .join(Incident, Incident.id == ComplianceRecord.incident_id)
                    .options(defer(Incident.raw), defer(ComplianceRecord.resolutions))
                    .where(ComplianceRecord.raised.is_(False))
                    .order_by(ComplianceRecord.id)
                    .limit(BATCH)
                )
            )
            if not rows:
                break
            keys = [dedup_key(inc, f["key"]) for rec, inc in rows for f in rec.findings]
            known: set[str] = set()
            for chunk in chunks(keys):
                known.update(
                    s.scalars(
                        select(Nonconformity.dedup_key).where(Nonconformity.dedup_key.in_(chunk))
                    )
                )
            per_incident = Counter(inc.id for _, inc in rows)
            # an incident with two records in one batch: one by one, as each sees the other's
            for rec, inc in rows:
                if per_incident[inc.id] > 1:
                    _raise_record(s, rt, rec, inc, known, result)
            single = [(rec, inc) for rec, inc in rows if per_incident[inc.id] == 1]
            _raise_batch(s, rt, single, known, result)
            for id_chunk in chunks([rec.id for rec, _ in rows]):
                s.execute(
                    update(ComplianceRecord)
                    .where(ComplianceRecord.id.in_(id_chunk))
                    .values(raised=True)
                )
    return result


def _raise_record(
    s: Session,
    rt: Runtime,
    rec: ComplianceRecord,
    inc: Incident,
    known: set[str],
    result: StepResult,
) -> None:
    """Withdraw and raise for one record, writing as it goes."""
    wanted = {dedup_key(inc, f["key"]) for f in rec.findings}
    _withdraw(s, rt, inc, wanted, rec.policy, result)
    for f in rec.findings:
        key = dedup_key(inc, f["key"])
        if key in known:
            continue
        known.add(key)
        _raise_one(s, rt, inc, rec, f, key, result)


def _raise_batch(
    s: Session,
    rt: Runtime,
    rows: list[tuple[ComplianceRecord, Incident]],
    known: set[str],
    result: StepResult,
) -> None:
    """Withdraw and raise for records of distinct incidents, with a few set-based statements."""
    standing: dict[tuple[int, str], list[Nonconformity]] = {}
    for chunk in chunks([inc.id for _, inc in rows]):
        for nc in s.scalars(
            select(Nonconformity)
            .where(
                Nonconformity.incident_id.in_(chunk),
                Nonconformity.state.in_(("open", "dead", "ticketed")),
            )
            .order_by(Nonconformity.id)
        ):
            standing.setdefault((nc.incident_id, nc.policy), []).append(nc)
    withdrawn: list[int] = []
    new_ncs: list[dict[str, Any]] = []
    items: list[tuple[str, dict[str, Any]]] = []
    for rec, inc in rows:
        wanted = {dedup_key(inc, f["key"]) for f in rec.findings}
        for nc in standing.get((inc.id, rec.policy), []):
            if nc.dedup_key not in wanted:
                _withdraw_one(s, rt, nc, result)
                withdrawn.append(nc.id)
        for f in rec.findings:
            key = dedup_key(inc, f["key"])
            if key in known:
                continue
            known.add(key)
            nc_row, item = _new_nonconformity(rt, inc, rec, f, key)
            new_ncs.append(nc_row)
            items.append((key, item))
            result.counts[f"raised_{f['severity']}"] += 1
    _cancel_tickets(s, withdrawn)
    ids = insert_returning_ids(s, Nonconformity, new_ncs, "dedup_key")
    insert_rows(s, OutboxItem, [{**item, "entity_id": ids[key]} for key, item in items])


def _new_nonconformity(
    rt: Runtime, inc: Incident, rec: ComplianceRecord, f: dict[str, Any], key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nonconformity row of a finding and its ticket's outbox row (without entity id)."""
    now: datetime = rt.now()
    push_to = rt.config.policies[rec.policy].push_to
    target = inc.source if push_to == "source" else push_to
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
        "state": "open",
        "ticket_target": target,
        "ticket_ref": None,
        "ticket_url": None,
        "ticket_status": None,
        "closed_at": None,
        "overdue": False,
        "created_at": now,
        "updated_at": now,
    }
    payload = _ticket_payload(rt, inc, target, f, key)
    return nc, outbox_row(key=key, kind="ticket", target=target, payload=payload, now=now)


def _raise_one(
    s: Session,
    rt: Runtime,
    inc: Incident,
    rec: ComplianceRecord,
    f: dict[str, Any],
    key: str,
    result: StepResult,
) -> None:
    now: datetime = rt.now()
    push_to = rt.config.policies[rec.policy].push_to
    target = inc.source if push_to == "source" else push_to
    nc = Nonconformity(
        dedup_key=key,
        incident_id=inc.id,
        rule=f["rule"],
        resolution_key=f["key"].split("@", 1)[1],
        severity=f["severity"],
        raised_at=parse_instant(f["raised_at"]),
        deadline=parse_instant(f["deadline"]),
        detail=f["detail"],
        evidence_ref=f.get("ref"),
        policy=rec.policy,
        policy_version=rec.policy_version,
        state="open",
        ticket_target=target,
        created_at=now,
        updated_at=now,
    )
    s.add(nc)
    s.flush()
    enqueue(
        s,
        key=key,
        kind="ticket",
        target=target,
        entity_id=nc.id,
        payload=_ticket_payload(rt, inc, target, f, key),
        now=now,
    )
    result.counts[f"raised_{f['severity']}"] += 1
