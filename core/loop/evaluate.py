"""evaluate: compliance of every incident whose facts changed, under its policy version.

A record is kept per (incident, policy, policy version), so a policy change
recomputes without touching the verdicts of the old version. An incident
with a pending callback is looked at again when the callback falls due.
The source's own SLA flags are kept beside qloop's, and a disagreement is
named.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.compliance import Evaluation, Finding
from core.compliance import evaluate as evaluate_incident
from core.loop.common import StepResult
from core.loop.facts import load_facts
from core.runtime import Runtime
from core.store.models import ComplianceRecord, Incident

BATCH = 1000


def finding_to_json(f: Finding) -> dict[str, Any]:
    return {
        "key": f.key,
        "rule": f.rule,
        "severity": f.severity,
        "resolution_at": f.resolution_at.isoformat() if f.resolution_at else None,
        "raised_at": f.raised_at.isoformat(),
        "deadline": f.deadline.isoformat(),
        "detail": f.detail,
        "ref": f.ref,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value) if hasattr(value, "value") else value


def disagreement(inc: Incident, ev: Evaluation) -> str | None:
    """Which of the source's SLA flags disagree with qloop's verdicts."""
    names = []
    for flag, ours in (("response_met", ev.response_met), ("resolution_met", ev.resolution_met)):
        theirs = inc.source_sla.get(flag) if isinstance(inc.source_sla, dict) else None
        if isinstance(theirs, bool) and ours is not None and theirs != ours:
            names.append(flag.removesuffix("_met"))
    return ",".join(names) or None


def store_evaluation(
    s: Session, inc: Incident, ev: Evaluation, existing: ComplianceRecord | None
) -> bool:
    """Upsert the compliance record; returns True when its findings changed."""
    findings = [finding_to_json(f) for f in ev.findings]
    values: dict[str, Any] = {
        "evaluated_at": ev.evaluated_at,
        "month": ev.month,
        "cancelled": ev.cancelled,
        "first_response_at": ev.first_response_at,
        "resolved_at": ev.resolved_at,
        "reopen_count": ev.reopen_count,
        "response_s": ev.response_s,
        "response_target_s": ev.response_target_s,
        "response_met": ev.response_met,
        "resolution_s": ev.resolution_s,
        "resolution_target_s": ev.resolution_target_s,
        "resolution_met": ev.resolution_met,
        "callback_verdict": str(ev.callback_verdict) if ev.callback_verdict else None,
        "callback_due": ev.callback_due,
        "confirmed": ev.confirmed,
        "callback_score": ev.callback_score,
        "survey_score": ev.survey_score,
        "source_response_met": _flag(inc, "response_met"),
        "source_resolution_met": _flag(inc, "resolution_met"),
        "sla_disagreement": disagreement(inc, ev),
        "resolutions": [_jsonable(asdict(r)) for r in ev.resolutions],
        "findings": findings,
    }
    if existing is None:
        s.add(
            ComplianceRecord(
                incident_id=inc.id,
                policy=ev.policy_name,
                policy_version=ev.policy_version,
                raised=not findings,
                **values,
            )
        )
        return bool(findings)
    changed = existing.findings != findings
    for key, value in values.items():
        setattr(existing, key, value)
    if changed:
        existing.raised = False
    return changed


def _flag(inc: Incident, name: str) -> bool | None:
    value = inc.source_sla.get(name) if isinstance(inc.source_sla, dict) else None
    return value if isinstance(value, bool) else None


def evaluate(rt: Runtime, incident_ids: list[int] | None = None) -> StepResult:
    """Evaluate incidents whose facts changed or whose pending verdict fell due.

    With ``incident_ids``, evaluate exactly those (used to recompute a period).
    """
    result = StepResult("evaluate")
    now = rt.now()
    last_id = 0
    while True:
        with rt.db.session() as s:
            query = select(Incident).where(Incident.id > last_id).order_by(Incident.id).limit(BATCH)
            if incident_ids is not None:
                query = query.where(Incident.id.in_(incident_ids))
            else:
                query = query.where(
                    or_(
                        Incident.evaluated_revision < Incident.revision,
                        Incident.evaluate_after <= now,
                    )
                )
            batch = list(s.scalars(query))
            if not batch:
                break
            last_id = batch[-1].id
            facts = load_facts(s, batch)
            records = {
                (r.incident_id, r.policy, r.policy_version): r
                for r in s.scalars(
                    select(ComplianceRecord).where(
                        ComplianceRecord.incident_id.in_([i.id for i in batch])
                    )
                )
            }
            for inc in batch:
                policy = rt.policy_for_source(inc.source)
                ev = evaluate_incident(facts[inc.id], policy, now)
                key = (inc.id, policy.name, policy.version)
                if store_evaluation(s, inc, ev, records.get(key)):
                    result.counts["findings_changed"] += 1
                inc.evaluated_revision = inc.revision
                inc.evaluate_after = ev.next_check_at
                result.counts["evaluated"] += 1
        rt.report("evaluate", result.counts["evaluated"])
    return result
