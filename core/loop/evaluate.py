"""evaluate: compliance of every incident whose facts changed, under its policy version.

A record is kept per (incident, policy, policy version), so a policy change
recomputes without touching the verdicts of the old version. An incident
with a pending callback is looked at again when the callback falls due.
The source's own SLA flags are kept beside qloop's, and a disagreement is
named. Every record carries the instant it was evaluated as of and the
versions of qloop and of the ``holidays`` package it was computed with; when
a re-evaluation changes a stored verdict and those versions differ from the
stored ones, the change is logged (INFO) and counted (``verdicts_changed_by_upgrade``)
with the incident, the field, old → new and the version change.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, func, or_, outerjoin, select
from sqlalchemy.orm import Session

from core.compliance import Policy, evaluate_incident
from core.gcfreeze import old_objects_frozen
from core.loop._bulk import BoundRows, chunks, ids_condition, table_of, update_by_id, upsert_rows
from core.loop.common import StepResult
from core.loop.facts import load_facts
from core.loop.record_rows import RecordRows, findings_text, resolutions_text
from core.loop.record_values import disagreement, evaluation_values
from core.loop.tracking import tracking_starts
from core.runtime import Runtime
from core.stamps import Stamps
from core.store.models import ComplianceRecord, Incident, IncidentEvaluation

__all__ = ["disagreement", "due", "evaluate", "evaluate_batches", "evaluation_values"]

BATCH = 1000
VERDICT_FIELDS = ("response_met", "resolution_met", "callback_verdict", "findings")
"""The stored verdicts whose change after an upgrade is said out loud."""

log = logging.getLogger("qloop.loop")


@dataclass
class _Stored:
    """What evaluate reads of a stored compliance record."""

    id: int
    findings: Any
    raised: bool
    verdicts: dict[str, Any]
    stamps: Stamps


def _stored_records(s: Session, ids: list[int]) -> dict[tuple[int, str, str], _Stored]:
    records: dict[tuple[int, str, str], _Stored] = {}
    conn = s.connection()
    for chunk in chunks(ids):
        where, keep = ids_condition(ComplianceRecord.incident_id, chunk)
        rows = conn.execute(
            select(
                ComplianceRecord.id,
                ComplianceRecord.incident_id,
                ComplianceRecord.policy,
                ComplianceRecord.policy_version,
                ComplianceRecord.findings,
                ComplianceRecord.raised,
                ComplianceRecord.response_met,
                ComplianceRecord.resolution_met,
                ComplianceRecord.callback_verdict,
                ComplianceRecord.qloop_version,
                ComplianceRecord.holidays_version,
            ).where(where)
        ).all()
        for row in rows:
            if keep is not None and row.incident_id not in keep:
                continue
            verdicts = {
                "response_met": row.response_met,
                "resolution_met": row.resolution_met,
                "callback_verdict": row.callback_verdict,
                "findings": row.findings,
            }
            records[(row.incident_id, row.policy, row.policy_version)] = _Stored(
                row.id,
                row.findings,
                row.raised,
                verdicts,
                Stamps(row.qloop_version, row.holidays_version),
            )
    return records


def _summary(value: Any) -> str:
    """A verdict for the log: findings as rule:severity (sorted), the rest as they are."""
    if isinstance(value, list):
        return "[" + ", ".join(sorted(f"{f.get('rule')}:{f.get('severity')}" for f in value)) + "]"
    return str(value)


def explain_version_change(
    inc: Incident, stored: _Stored, values: dict[str, Any], stamps: Stamps, result: StepResult
) -> None:
    """Log and count each stored verdict a re-evaluation changed under other versions."""
    why = stamps.changes_from(stored.stamps)
    if not why:
        return
    for name in VERDICT_FIELDS:
        old, new = stored.verdicts[name], values[name]
        if old == new:
            continue
        result.counts["verdicts_changed_by_upgrade"] += 1
        log.info(
            "evaluate: %s (%s) %s changed %s → %s after %s",
            inc.key,
            inc.source,
            name,
            _summary(old),
            _summary(new),
            why,
        )


def due_from() -> FromClause:
    """Incidents beside how far the step got with each (:func:`due` reads both)."""
    return outerjoin(
        table_of(Incident),
        table_of(IncidentEvaluation),
        IncidentEvaluation.incident_id == Incident.id,
    )


def due(now: datetime) -> ColumnElement[bool]:
    """Which incidents the step evaluates as of ``now``: facts changed, or a verdict fell due.

    An incident never evaluated has no :class:`IncidentEvaluation` row: its
    evaluated revision is 0. Select from :func:`due_from`.
    """
    return or_(
        func.coalesce(IncidentEvaluation.evaluated_revision, 0) < Incident.revision,
        IncidentEvaluation.evaluate_after <= now,
    )


def evaluate(
    rt: Runtime,
    incident_ids: list[int] | None = None,
    partition: tuple[int, int] | None = None,
    *,
    processes: int = 1,
) -> StepResult:
    """Evaluate incidents whose facts changed or whose pending verdict fell due.

    With ``incident_ids``, evaluate exactly those (used to recompute a period).
    With ``partition`` ``(k, n)``, only the incidents whose ``id % n == k``:
    the n partitions of a step are disjoint and together cover it, so n
    workers may run them at once (:func:`workers.jobs.evaluate_part`).
    With ``processes`` above 1 (and neither of those), the step is split
    into that many id ranges evaluated at once in child processes
    (:mod:`core.loop.evaluate_parallel`) when it has enough incidents.
    """
    with old_objects_frozen():
        if processes > 1 and incident_ids is None and partition is None:
            from core.loop.evaluate_parallel import evaluate_in_processes

            split = evaluate_in_processes(rt, processes)
            if split is not None:
                return split
        return evaluate_batches(rt, incident_ids, partition)


def evaluate_batches(
    rt: Runtime,
    incident_ids: list[int] | None = None,
    partition: tuple[int, int] | None = None,
    id_range: tuple[int, int | None] | None = None,
) -> StepResult:
    """The step in this process, batch by batch (the caller freezes the old objects).

    ``id_range`` ``(first, stop)`` keeps the incidents with ``first <= id``
    and, unless ``stop`` is None, ``id < stop``.
    """
    result = StepResult("evaluate")
    now = rt.now()
    stamps = Stamps.current()
    stamped = {
        "as_of": now,
        "qloop_version": stamps.qloop,
        "holidays_version": stamps.holidays,
    }
    starts = tracking_starts(rt)  # §11; unknown yet (no successful pull): as of now
    policies: dict[str, Policy] = {}
    # bound once per batch (evaluated_at is ``now`` itself when ``now`` is whole-second UTC)
    constants = {"evaluated_at": now, "as_of": now}
    last_id = id_range[0] - 1 if id_range is not None else 0
    stop = id_range[1] if id_range is not None else None
    wanted = sorted(set(incident_ids)) if incident_ids is not None else None
    while True:
        with rt.db.session() as s:
            query = (
                select(
                    Incident.id,
                    Incident.source,
                    Incident.key,
                    Incident.priority,
                    Incident.created_at,
                    Incident.source_sla,
                    Incident.revision,
                )
                .where(Incident.id > last_id)
                .order_by(Incident.id)
                .limit(BATCH)
            )
            if partition is not None:
                query = query.where(Incident.id % partition[1] == partition[0])
            if stop is not None:
                query = query.where(Incident.id < stop)
            if wanted is not None:
                # the next BATCH ids asked for: a bounded IN list however many were asked
                ahead = wanted[bisect_right(wanted, last_id) :][:BATCH]
                if not ahead:
                    break
                query = query.where(Incident.id.in_(ahead))
            else:
                query = query.select_from(due_from()).where(due(now))
            # plain Core rows (attribute access), not through the ORM's result handling
            batch: Sequence[Any] = s.connection().execute(query).all()
            if not batch and wanted is not None:
                last_id = ahead[-1]  # none of these exist (any more): on to the next ids
                continue
            if not batch:
                break
            last_id = batch[-1].id
            facts = load_facts(s, batch)
            records = _stored_records(s, [i.id for i in batch])
            new = RecordRows(s, now, (stamps.qloop, stamps.holidays))
            inserts: BoundRows | None = None  # new records where ``new`` is not fast
            updates: list[dict[str, Any]] = []
            progress: list[dict[str, Any]] = []
            for inc in batch:
                policy = policies.get(inc.source)
                if policy is None:
                    policy = policies[inc.source] = rt.policy_for_source(inc.source)
                start = starts.get(inc.source) or now
                ev = evaluate_incident(facts[inc.id], policy, now, tracking_from=start)
                stored = records.get((inc.id, policy.name, policy.version))
                if stored is None and new.fast:
                    changed = bool(ev.findings)
                    new.add(inc, ev, resolutions_text(ev.resolutions), findings_text(ev.findings))
                elif stored is None:
                    values = evaluation_values(inc, ev)
                    values.update(stamped)
                    changed = bool(values["findings"])
                    values["incident_id"] = inc.id
                    values["policy"] = ev.policy_name
                    values["policy_version"] = ev.policy_version
                    values["raised"] = not values["findings"]
                    if inserts is None:  # every new record has the same columns: the first's
                        inserts = BoundRows(s, ComplianceRecord, list(values), constants)
                    inserts.add(values)
                else:
                    values = evaluation_values(inc, ev)
                    values.update(stamped)
                    changed = stored.findings != values["findings"]
                    explain_version_change(inc, stored, values, stamps, result)
                    raised = False if changed else stored.raised
                    updates.append({"id": stored.id, **values, "raised": raised})
                if changed:
                    result.counts["findings_changed"] += 1
                progress.append(
                    {
                        "incident_id": inc.id,
                        "evaluated_revision": inc.revision,
                        "evaluate_after": ev.next_check_at,
                    }
                )
                result.counts["evaluated"] += 1
            new.insert()
            if inserts is not None:
                inserts.insert()
            update_by_id(s, ComplianceRecord, updates)
            upsert_rows(s, IncidentEvaluation, progress, "incident_id")
        rt.report("evaluate", result.counts["evaluated"])
    return result
