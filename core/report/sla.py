"""Why the ITSM tool's SLA flag and qloop's verdict disagree, computed from the facts.

For each disagreeing verdict (response or resolution), the alternative
measures the tool might have used are computed from the incident's status
history; a cause is named when the verdict under that measure equals the
tool's flag:

- ``waiting``: resolution time with the time in ``waiting`` counted;
- ``reopen``: resolution time up to the first resolution only (the tool's
  cycle ignored the reopen);
- ``calendar``: elapsed time instead of business time on the policy calendar;
- ``goal_changed``: the target of an earlier policy version (stored
  compliance records of the incident under that version).

None matching: ``unexplained``. Several may match; all are listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.compliance import Evaluation, IncidentFacts, Policy
from core.compliance.history import ACTIVE, Timeline, build_timeline, seconds_in
from core.export.as_of import Judged
from core.loop._bulk import chunks
from core.records import Category
from core.store.models import ComplianceRecord

WITH_WAITING = ACTIVE | {Category.WAITING}


def _seconds(
    timeline: Timeline,
    until: datetime,
    kinds: frozenset[Category],
    policy: Policy,
    *,
    business: bool,
) -> int:
    """Time spent in ``kinds`` within [created_at, until], business or elapsed."""

    def elapsed(lo: datetime, hi: datetime) -> int:
        return int((hi - lo).total_seconds())

    return seconds_in(
        timeline, until, kinds, policy.calendar.business_seconds if business else elapsed
    )


def explain(
    kind: str,
    facts: IncidentFacts,
    ev: Evaluation,
    policy: Policy,
    theirs: bool,
    earlier_targets: Mapping[str, int],
) -> dict[str, Any]:
    """The causes of one disagreement and the alternative measures behind them.

    Args:
        kind: ``response`` or ``resolution``.
        facts: The incident's facts as of the report's instant.
        ev: qloop's evaluation.
        policy: The policy in force.
        theirs: The tool's flag (met or not).
        earlier_targets: Earlier policy version → its target for this incident.
    """
    timeline = build_timeline(facts.created_at, facts.history)
    target = ev.response_target_s if kind == "response" else ev.resolution_target_s
    ours_s = ev.response_s if kind == "response" else ev.resolution_s
    measures: dict[str, int | None] = {}
    causes: list[str] = []

    def judge(cause: str, seconds: int | None, goal: int | None = target) -> None:
        measures[cause] = seconds
        if seconds is not None and goal is not None and (seconds <= goal) == theirs:
            causes.append(cause)

    if kind == "response":
        if ev.first_response_at is not None:
            elapsed = int((ev.first_response_at - timeline.created_at).total_seconds())
            judge("calendar", max(elapsed, 0))
    elif ev.resolved_at is not None:
        end = ev.resolved_at
        judge("waiting", _seconds(timeline, end, WITH_WAITING, policy, business=True))
        if ev.reopen_count and timeline.resolutions:
            first = timeline.resolutions[0].at
            judge("reopen", _seconds(timeline, first, ACTIVE, policy, business=True))
        judge("calendar", _seconds(timeline, end, ACTIVE, policy, business=False))
    earlier_version = None
    for version, goal in sorted(earlier_targets.items()):
        if goal != target and ours_s is not None and (ours_s <= goal) == theirs:
            causes.append("goal_changed")
            measures["goal_changed"] = goal
            earlier_version = version
            break
    return {
        "kind": kind,
        "tool_met": theirs,
        "qloop_met": not theirs,
        "qloop_s": ours_s,
        "target_s": target,
        "causes": causes or ["unexplained"],
        "measures": measures,
        "earlier_version": earlier_version,
    }


def _earlier_targets(
    s: Session, policy: Policy, ids: Sequence[int]
) -> dict[int, dict[str, dict[str, int]]]:
    """incident → kind → earlier policy version → that version's stored target."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for chunk in chunks(list(ids)):
        for inc_id, version, resp, reso in s.execute(
            select(
                ComplianceRecord.incident_id,
                ComplianceRecord.policy_version,
                ComplianceRecord.response_target_s,
                ComplianceRecord.resolution_target_s,
            ).where(
                ComplianceRecord.incident_id.in_(chunk),
                ComplianceRecord.policy == policy.name,
                ComplianceRecord.policy_version != policy.version,
            )
        ):
            per = out.setdefault(inc_id, {"response": {}, "resolution": {}})
            if resp is not None:
                per["response"][version] = resp
            if reso is not None:
                per["resolution"][version] = reso
    return out


def disagreements(
    s: Session,
    policy: Policy,
    judged: Sequence[Judged],
    facts: Mapping[int, IncidentFacts],
) -> list[tuple[int, dict[str, Any]]]:
    """The ITSM-vs-qloop SLA disagreements among ``judged`` with their causes (no personal data).

    ``facts``: the incidents' facts as of the instant they were judged at
    (:class:`core.export.as_of.Chunk`). Each row comes with the position of its
    incident in ``judged``.
    """
    found = [(n, j) for n, j in enumerate(judged) if j.sla_disagreement]
    if not found:
        return []
    earlier = _earlier_targets(s, policy, [j.incident.id for _, j in found])
    out: list[tuple[int, dict[str, Any]]] = []
    for n, j in found:
        inc = j.incident
        flags = inc.source_sla if isinstance(inc.source_sla, dict) else {}
        for kind in str(j.sla_disagreement).split(","):
            theirs = flags.get(f"{kind}_met")
            if not isinstance(theirs, bool) or inc.id not in facts:
                continue
            row = explain(
                kind,
                facts[inc.id],
                j.evaluation,
                policy,
                theirs,
                earlier.get(inc.id, {}).get(kind, {}),
            )
            out.append(
                (
                    n,
                    {
                        "policy": j.policy,
                        "source": inc.source,
                        "incident_key": inc.key,
                        "external_id": inc.external_id,
                        "priority": inc.priority,
                        "service": inc.service,
                        "customer": inc.customer,
                        **row,
                    },
                )
            )
    return out
