"""plan: a callback task for every resolution that is still standing (R1).

For each incident whose data changed since it was last planned, the
current resolution (not reopened) gets one callback task, due
``callback_within`` after it, and an outbox item for the policy's callback
channel. A task planned for a resolution that has since been reopened is
superseded and, if not sent yet, its outbox item is cancelled. A customer
the channel cannot reach gets a task in state ``no_contact`` (counted, not
skipped).

Tracking start (SPEC §11, :mod:`core.loop.tracking`): a resolution whose
callback due is before its source's tracking start gets no task (counted as
``untracked``); while the source has no tracking start yet (no successful
pull), its incidents are left for a later plan.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.compliance.history import Timeline, build_timeline
from core.loop._bulk import BoundRows, chunks, insert_returning_ids, update_by_id
from core.loop.common import StepResult, in_scope
from core.loop.facts import load_history
from core.loop.outbox import incident_contact, message_payload, new_token, outbox_row
from core.loop.tracking import tracking_starts
from core.runtime import Runtime
from core.states import CallbackState
from core.store.models import CallbackTask, Incident, OutboxItem

BATCH = 1000
_COLUMNS = (
    Incident.id,
    Incident.source,
    Incident.external_id,
    Incident.key,
    Incident.title,
    Incident.priority,
    Incident.service,
    Incident.customer,
    Incident.contact_name,
    Incident.contact_phone,
    Incident.contact_email,
    Incident.created_at,
    Incident.revision,
)
"""What plan reads of an incident (as plain rows: attribute access, no ORM instances)."""


def callback_key(inc: Any, resolution_at_iso: str) -> str:
    return f"callback:{inc.source}:{inc.external_id}:{resolution_at_iso}"


def _cancel_outbox(session: Session, task_ids: list[int]) -> None:
    """Cancel the pending callback outbox items of superseded tasks."""
    for chunk in chunks(task_ids):
        session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.kind == "callback",
                OutboxItem.entity_id.in_(chunk),
                OutboxItem.state == "pending",
            )
            .values(state="cancelled")
        )


@dataclass
class _Pending:
    """What one batch writes at its end: new tasks, their outbox items, superseded tasks."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(task's correlation token, outbox row without its entity id)."""
    superseded: list[int] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)


def plan(
    rt: Runtime, sources: Collection[str] | None = None, *, others: bool = False
) -> StepResult:
    """Plan callback tasks for incidents changed since they were last planned.

    With ``sources``, only the incidents of those sources (and, with
    ``others``, of sources no longer enabled: :func:`core.loop.common.in_scope`).
    An incident's plan reads and writes only its own rows, so plans of
    disjoint sources may run at once (each source's sync job plans its own).
    """
    result = StepResult("plan")
    now = rt.now()
    starts = tracking_starts(rt)
    scope = in_scope(Incident.source, sources, rt.source_names(), others)
    last_id = 0
    while True:
        with rt.db.session() as s:
            batch = list(
                s.execute(
                    select(*_COLUMNS)
                    .where(Incident.planned_revision < Incident.revision, Incident.id > last_id)
                    .where(scope)
                    .order_by(Incident.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            last_id = batch[-1].id
            history = load_history(s, [i.id for i in batch])
            tasks: dict[int, list[Any]] = {}
            for chunk in chunks([i.id for i in batch]):
                for task in s.execute(
                    select(
                        CallbackTask.id,
                        CallbackTask.incident_id,
                        CallbackTask.resolution_at,
                        CallbackTask.state,
                    ).where(CallbackTask.incident_id.in_(chunk))
                ):
                    tasks.setdefault(task.incident_id, []).append(task)
            pending = _Pending()
            for inc in batch:
                timeline = build_timeline(inc.created_at, history.get(inc.id, []))
                start = starts.get(inc.source)
                if _plan_one(rt, inc, timeline, tasks.get(inc.id, []), now, start, result, pending):
                    pending.planned.append({"id": inc.id, "planned_revision": inc.revision})
            _write(s, pending, now)
    return result


def _write(s: Session, pending: _Pending, now: datetime) -> None:
    """Store one batch's plan: superseded tasks' items cancelled, new tasks and items inserted.

    The outbox rows are bound as they are added (:class:`BoundRows`), the
    run's instant (``next_attempt_at``, ``created_at`` of every item) once.
    """
    update_by_id(
        s, CallbackTask, [{"id": i, "state": CallbackState.SUPERSEDED} for i in pending.superseded]
    )
    _cancel_outbox(s, pending.superseded)
    ids = insert_returning_ids(s, CallbackTask, pending.tasks, "correlation_token")
    if pending.items:
        names = [*pending.items[0][1], "entity_id"]
        items = BoundRows(s, OutboxItem, names, {"next_attempt_at": now, "created_at": now})
        for token, row in pending.items:
            items.add({**row, "entity_id": ids[token]})
        items.insert()
    update_by_id(s, Incident, pending.planned)


def _plan_one(
    rt: Runtime,
    inc: Any,
    timeline: Timeline,
    tasks: list[Any],
    now: datetime,
    tracking_from: datetime | None,
    result: StepResult,
    pending: _Pending,
) -> bool:
    """Decide one incident's plan; the rows to write go to ``pending``.

    The standing resolution is read from the status timeline alone (what
    the full evaluation would report as its resolutions).

    Returns:
        False when the incident must be planned again later (its source has no
        tracking start yet), else True.
    """
    policy = rt.policy_for_source(inc.source)
    by_resolution = {t.resolution_at: t for t in tasks}
    standing = None
    if not timeline.cancelled:
        standing = next((r for r in timeline.resolutions if r.window_end is None), None)
    for task in tasks:
        stale = standing is None or task.resolution_at != standing.at
        if stale and task.state in (CallbackState.PLANNED, CallbackState.NO_CONTACT):
            pending.superseded.append(task.id)
            result.counts["superseded"] += 1
    if standing is None or standing.at in by_resolution or not policy.callback_channel:
        return True
    if tracking_from is None:
        result.counts["awaiting_tracking_start"] += 1
        return False
    due = policy.callback_due(standing.at)
    if due < tracking_from:  # §11: nobody is phoned about a resolution due before tracking
        result.counts["untracked"] += 1
        return True
    channel_name = policy.callback_channel
    channel = rt.channel(channel_name)
    token = new_token()
    reachable = channel.can_reach(incident_contact(inc))
    pending.tasks.append(
        {
            "incident_id": inc.id,
            "resolution_at": standing.at,
            "due_at": due,
            "channel": channel_name,
            "correlation_token": token,
            "state": "planned" if reachable else "no_contact",
            "provider_ref": None,
            "created_at": now,
        }
    )
    if not reachable:
        result.counts["no_contact"] += 1
        return True
    key = callback_key(inc, standing.at.isoformat())
    payload = message_payload(
        inc, kind="callback", key=key, token=token, resolved_at=standing.at, due_at=due
    )
    pending.items.append(
        (token, outbox_row(key=key, kind="callback", target=channel_name, payload=payload, now=now))
    )
    result.counts["callbacks"] += 1
    return True
