"""plan: a callback task for every resolution that is still standing (R1).

For each incident whose data changed since it was last planned, the
current resolution (not reopened) gets one callback task, due
``callback_within`` after it, and an outbox item for the policy's callback
channel. A task planned for a resolution that has since been reopened is
superseded and, if not sent yet, its outbox item is cancelled. A customer
the channel cannot reach gets a task in state ``no_contact`` (counted, not
skipped).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.compliance import evaluate as evaluate_incident
from core.loop.common import StepResult
from core.loop.facts import load_facts
from core.loop.outbox import enqueue, incident_contact, message_payload, new_token
from core.runtime import Runtime
from core.store.models import CallbackTask, Incident, OutboxItem

BATCH = 1000


def callback_key(inc: Incident, resolution_at_iso: str) -> str:
    return f"callback:{inc.source}:{inc.external_id}:{resolution_at_iso}"


def _supersede(session: Session, task: CallbackTask, result: StepResult) -> None:
    if task.state in ("planned", "no_contact"):
        task.state = "superseded"
        session.execute(
            update(OutboxItem)
            .where(
                OutboxItem.kind == "callback",
                OutboxItem.entity_id == task.id,
                OutboxItem.state == "pending",
            )
            .values(state="cancelled")
        )
        result.counts["superseded"] += 1


def plan(rt: Runtime) -> StepResult:
    """Plan callback tasks for incidents changed since they were last planned."""
    result = StepResult("plan")
    now = rt.now()
    last_id = 0
    while True:
        with rt.db.session() as s:
            batch = list(
                s.scalars(
                    select(Incident)
                    .where(Incident.planned_revision < Incident.revision, Incident.id > last_id)
                    .order_by(Incident.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            last_id = batch[-1].id
            facts = load_facts(s, batch, with_answers=False)
            tasks: dict[int, list[CallbackTask]] = {}
            for task in s.scalars(
                select(CallbackTask).where(CallbackTask.incident_id.in_([i.id for i in batch]))
            ):
                tasks.setdefault(task.incident_id, []).append(task)
            for inc in batch:
                _plan_incident(rt, s, inc, facts[inc.id], tasks.get(inc.id, []), now, result)
                inc.planned_revision = inc.revision
    return result


def _plan_incident(
    rt: Runtime,
    s: Session,
    inc: Incident,
    facts: object,
    tasks: list[CallbackTask],
    now: object,
    result: StepResult,
) -> None:
    policy = rt.policy_for_source(inc.source)
    pcfg = rt.config.policies[policy.name]
    ev = evaluate_incident(facts, policy, now)  # type: ignore[arg-type]
    by_resolution = {t.resolution_at: t for t in tasks}
    standing = None
    if not ev.cancelled:
        standing = next((r for r in ev.resolutions if r.window_end is None), None)
    for task in tasks:
        if standing is None or task.resolution_at != standing.at:
            _supersede(s, task, result)
    if standing is None or standing.at in by_resolution or not pcfg.callback_channel:
        return
    channel_name = pcfg.callback_channel
    channel = rt.channel(channel_name)
    due = standing.at + timedelta(seconds=policy.callback_within_s)
    token = new_token()
    reachable = channel.can_reach(incident_contact(inc))
    task = CallbackTask(
        incident_id=inc.id,
        resolution_at=standing.at,
        due_at=due,
        channel=channel_name,
        correlation_token=token,
        state="planned" if reachable else "no_contact",
        created_at=now,
    )
    s.add(task)
    s.flush()
    if not reachable:
        result.counts["no_contact"] += 1
        return
    key = callback_key(inc, standing.at.isoformat())
    enqueue(
        s,
        key=key,
        kind="callback",
        target=channel_name,
        entity_id=task.id,
        payload=message_payload(
            inc, kind="callback", key=key, token=token, resolved_at=standing.at, due_at=due
        ),
        now=now,
    )
    result.counts["callbacks"] += 1
