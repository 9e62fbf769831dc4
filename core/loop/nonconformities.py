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

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.loop.common import StepResult, audit
from core.loop.outbox import enqueue
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
        nc.state, nc.updated_at = "withdrawn", rt.now()
        s.execute(
            update(OutboxItem)
            .where(
                OutboxItem.kind == "ticket",
                OutboxItem.entity_id == nc.id,
                OutboxItem.state.in_(("pending", "dead")),
            )
            .values(state="cancelled")
        )
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


def raise_nonconformities(rt: Runtime) -> StepResult:
    """Create the nonconformities of compliance records whose findings changed."""
    result = StepResult("raise")
    while True:
        with rt.db.session() as s:
            rows = list(
                s.execute(
                    select(ComplianceRecord, Incident)
                    .join(Incident, Incident.id == ComplianceRecord.incident_id)
                    .where(ComplianceRecord.raised.is_(False))
                    .order_by(ComplianceRecord.id)
                    .limit(BATCH)
                )
            )
            if not rows:
                break
            keys = [dedup_key(inc, f["key"]) for rec, inc in rows for f in rec.findings]
            known = set(
                s.scalars(select(Nonconformity.dedup_key).where(Nonconformity.dedup_key.in_(keys)))
            )
            for rec, inc in rows:
                wanted = {dedup_key(inc, f["key"]) for f in rec.findings}
                _withdraw(s, rt, inc, wanted, rec.policy, result)
                for f in rec.findings:
                    key = dedup_key(inc, f["key"])
                    if key in known:
                        continue
                    known.add(key)
                    _raise_one(s, rt, inc, rec, f, key, result)
                rec.raised = True
    return result


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
