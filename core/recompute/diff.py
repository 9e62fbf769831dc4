"""Re-evaluate a past month from the stored facts and say, per incident, what changed and why.

For each policy, the month's incidents are judged as of ``as_of`` (in
memory, :func:`core.export.as_of.judge_period`) and compared with their
stored compliance record (the newest one of the policy, whatever its
version). Which rules judge them:

- by default, *the policy in force then*: the rules of the stored record's
  policy version. qloop keeps no copy of past rules, so a version can only
  be used when the current configuration still defines a policy with that
  version (the version hashes the rules and calendar, not the name: keep the
  old rules under another policy name to recompute with them). A stored
  version the configuration no longer defines is judged under the current
  rules, and the change is put down to the policy change;
- with ``policy_version``, the policy of the configuration with that
  version, for every incident (an unknown version is an error listing the
  defined ones).

Causes of a change (several may apply): ``policy`` (the version judged
under differs from the stored one), ``late_facts`` (status changes after
the stored record's ``as_of``, or answers received after it), ``holidays``
and ``qloop`` (the stored version stamps differ from the running ones),
``time`` (none of these: only the later ``as_of``, e.g. a pending callback
now due).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.compliance import Policy, whole_second
from core.errors import InputError
from core.export.as_of import Judged, judge_period
from core.loop._bulk import chunks
from core.runtime import Runtime
from core.stamps import Stamps
from core.store.models import ComplianceRecord, Incident, Match, Response, StatusEvent
from core.timeutil import as_utc, parse_month

COMPARED = (
    "month",
    "cancelled",
    "response_s",
    "response_met",
    "resolution_s",
    "resolution_met",
    "callback_verdict",
    "confirmed",
    "callback_score",
    "survey_score",
    "findings",
)
"""The record fields whose change is reported."""


@dataclass
class Change:
    """One incident whose verdicts differ between its stored record and the recompute."""

    policy: str
    incident: str
    source: str
    fields: dict[str, tuple[Any, Any]]
    """Field → (stored, recomputed); ``findings`` as ``rule:severity`` lists."""
    causes: list[str]
    stored_version: str | None
    version: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Per cause, what shows it (versions before → after, the late facts' instants)."""


@dataclass
class Recompute:
    """The recompute of a month: its changes, and the judged incidents (for ``--apply``)."""

    period: str
    as_of: datetime
    policy_version: str | None
    stamps: Stamps
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0
    judged: dict[str, list[tuple[Judged, str]]] = field(default_factory=dict)
    """Policy name → (judged incident, the version of the rules it was judged under)."""


def _finding_labels(findings: Sequence[Any]) -> list[str]:
    return sorted(f"{f['rule']}:{f['severity']}" for f in findings or [])


def _compared(values: dict[str, Any]) -> dict[str, Any]:
    out = {name: values.get(name) for name in COMPARED}
    out["findings"] = _finding_labels(values.get("findings") or [])
    return out


def _by_version(rt: Runtime) -> dict[str, Policy]:
    return {pol.version: pol for _, pol in sorted(rt.policies.items())}


def _stored(s: Session, policy: str, month: str) -> dict[int, ComplianceRecord]:
    """The newest stored record of each incident of the policy's month."""
    newest: dict[int, ComplianceRecord] = {}
    for rec in s.scalars(
        select(ComplianceRecord)
        .where(ComplianceRecord.policy == policy, ComplianceRecord.month == month)
        .order_by(ComplianceRecord.evaluated_at, ComplianceRecord.id)
    ):
        newest[rec.incident_id] = rec
    return newest


def _late_facts(
    s: Session, stored: dict[int, ComplianceRecord], as_of: datetime
) -> dict[int, list[str]]:
    """Per incident, the facts stored after its record's ``as_of`` and seen at the new one."""
    since = {i: as_utc(r.as_of or r.evaluated_at) for i, r in stored.items()}
    late: dict[int, list[str]] = {}
    for ids in chunks(sorted(stored)):
        for event_inc, event_at, category in s.execute(
            select(StatusEvent.incident_id, StatusEvent.at, StatusEvent.category).where(
                StatusEvent.incident_id.in_(ids)
            )
        ):
            at, before = as_utc(event_at), since[event_inc]
            if at is not None and before is not None and before < at <= as_of:
                late.setdefault(event_inc, []).append(f"status {category} at {at.isoformat()}")
        for answer_inc, kind, occurred_at, received_at in s.execute(
            select(Match.incident_id, Response.kind, Response.occurred_at, Response.received_at)
            .join(Response, Response.id == Match.response_id)
            .where(Match.incident_id.in_(ids), Match.status == "matched")
        ):
            if answer_inc is None:
                continue
            inc_id = int(answer_inc)
            occurred, received = as_utc(occurred_at), as_utc(received_at)
            before = since[inc_id]
            if occurred is None or received is None or before is None or occurred > as_of:
                continue
            if received > before:
                late.setdefault(inc_id, []).append(
                    f"{kind} answer of {occurred.isoformat()} received {received.isoformat()}"
                )
    return {i: sorted(v) for i, v in late.items()}


def _causes(
    rec: ComplianceRecord, version: str, now: Stamps, late: list[str], as_of: datetime
) -> tuple[list[str], dict[str, Any]]:
    causes: list[str] = []
    detail: dict[str, Any] = {}
    if rec.policy_version != version:
        causes.append("policy")
        detail["policy"] = f"{rec.policy_version} → {version}"
    if late:
        causes.append("late_facts")
        detail["late_facts"] = late
    for name, before, after in (
        ("holidays", rec.holidays_version, now.holidays),
        ("qloop", rec.qloop_version, now.qloop),
    ):
        if before != after:
            causes.append(name)
            detail[name] = f"{before or 'unknown'} → {after or 'unknown'}"
    if not causes:
        causes.append("time")
        stored_as_of = as_utc(rec.as_of or rec.evaluated_at)
        detail["time"] = (
            f"as of {stored_as_of.isoformat() if stored_as_of else '?'} → {as_of.isoformat()}"
        )
    return causes, detail


def _rules_for(
    rt: Runtime, name: str, stored: dict[int, ComplianceRecord], forced: Policy | None
) -> dict[str, Policy]:
    """Stored version → the rules to judge its incidents under (``""``: no stored record)."""
    current = rt.policy(name)
    if forced is not None:
        return {v: forced for v in {"", *(r.policy_version for r in stored.values())}}
    known = _by_version(rt)
    rules = {"": current}
    for rec in stored.values():
        rules.setdefault(rec.policy_version, known.get(rec.policy_version, current))
    return rules


def recompute_period(
    rt: Runtime,
    period: str,
    *,
    as_of: datetime,
    policy_version: str | None = None,
    policy: str | None = None,
) -> Recompute:
    """Re-evaluate ``period`` as of ``as_of`` and list what changed and why (writes nothing)."""
    parse_month(period)
    as_of = whole_second(as_of)
    forced = None
    if policy_version is not None:
        forced = _by_version(rt).get(policy_version)
        if forced is None:
            defined = ", ".join(f"{p.version} ({n})" for n, p in sorted(rt.policies.items()))
            msg = (
                f"--policy-version {policy_version!r} is not defined by the configuration "
                f"(defined: {defined}); keep the old rules under a policy name to use them"
            )
            raise InputError(msg, field="--policy-version")
    names = [rt.policy(policy).name] if policy else sorted(rt.policies)
    now = Stamps.current()
    result = Recompute(period, as_of, policy_version, now)
    with rt.db.session() as s:
        for name in names:
            stored = _stored(s, name, period)
            rules = _rules_for(rt, name, stored, forced)
            judged: dict[int, tuple[Judged, str]] = {}
            for pol in {id(p): p for p in rules.values()}.values():
                wanted = {v for v, p in rules.items() if p is pol}
                for j in judge_period(rt, s, name, period, as_of, rules=pol).incidents:
                    rec = stored.get(j.incident.id)
                    if (rec.policy_version if rec else "") in wanted:
                        judged[j.incident.id] = (j, pol.version)
            result.judged[name] = [judged[i] for i in sorted(judged)]
            late = _late_facts(s, stored, as_of)
            keys = (
                dict(
                    s.execute(
                        select(Incident.id, Incident.key).where(
                            Incident.id.in_(sorted(set(stored) | set(judged)))
                        )
                    ).all()
                )
                if (stored or judged)
                else {}
            )
            sources = {j.incident.id: j.incident.source for j, _ in judged.values()}
            for inc_id in sorted(set(stored) | set(judged)):
                rec = stored.get(inc_id)
                pair = judged.get(inc_id)
                before = _compared(_record_values(rec)) if rec else {}
                after = _compared(pair[0].values) if pair else {}
                if pair is None:  # no longer in the month as seen at as_of
                    after = {**dict.fromkeys(before), "month": None, "findings": []}
                diff = {
                    k: (before.get(k), after.get(k))
                    for k in COMPARED
                    if before.get(k) != after.get(k)
                }
                if not diff:
                    result.unchanged += 1
                    continue
                version = pair[1] if pair else rules[rec.policy_version if rec else ""].version
                if rec is None:
                    causes, detail = ["new"], {"new": "no stored record for this month"}
                else:
                    causes, detail = _causes(rec, version, now, late.get(inc_id, []), as_of)
                result.changes.append(
                    Change(
                        policy=name,
                        incident=str(keys.get(inc_id, inc_id)),
                        source=sources.get(inc_id) or _source_of(s, inc_id),
                        fields=diff,
                        causes=causes,
                        stored_version=rec.policy_version if rec else None,
                        version=version,
                        detail=detail,
                    )
                )
    return result


def _source_of(s: Session, inc_id: int) -> str:
    return str(s.scalar(select(Incident.source).where(Incident.id == inc_id)) or "")


def _record_values(rec: ComplianceRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in (*COMPARED,)}
