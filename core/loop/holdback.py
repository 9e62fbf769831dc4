"""Findings that wait for their channel's outcomes before they are raised (SPEC §10).

A finding about a callback (``callback_missed``, ``callback_late``,
``not_confirmed``, ``low_satisfaction``) says something about what the
callback channel reported. It is raised only once that channel's outcomes
are in: the resolution's callback task has been delivered, and a collect of
its channel that started at or after both the finding's instant (for
``callback_missed``: the due) and the task's delivery has ended
(``SourceState.collected_until``, set by :func:`core.loop.collect.collect`).
A task the channel refused, or a resolution without a task, waits for
nothing: no outcome can come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.loop._bulk import chunks
from core.loop.common import collect_state_name
from core.loop.plan import callback_key
from core.store.models import CallbackTask, OutboxItem, SourceState
from core.timeutil import parse_instant

CHANNEL_RULES = frozenset({"callback_missed", "callback_late", "not_confirmed", "low_satisfaction"})
"""Rules whose findings depend on what the callback channel reported."""


@dataclass(frozen=True)
class _Task:
    channel: str | None
    state: str
    sent_at: datetime | None


class Holdback:
    """What a batch of incidents' callback findings wait for, read once per batch.

    Args:
        s: The session.
        incidents: The incidents of the batch (``id``, ``source``, ``external_id``).
    """

    def __init__(self, s: Session, incidents: Sequence[Any]) -> None:
        self.tasks: dict[tuple[int, datetime], _Task] = {}
        rows: list[tuple[int, int, datetime, str | None, str]] = []
        by_id = {inc.id: inc for inc in incidents}
        for chunk in chunks(sorted(by_id)):
            rows += list(
                s.execute(
                    select(
                        CallbackTask.id,
                        CallbackTask.incident_id,
                        CallbackTask.resolution_at,
                        CallbackTask.channel,
                        CallbackTask.state,
                    ).where(CallbackTask.incident_id.in_(chunk))
                )
            )
        # the sent tasks' outbox items by idempotency key (its unique index; outbox_item
        # has no index on entity_id, so reading them by it scanned the whole outbox for
        # each batch); the entity id is still what ties an item to its task
        keys = [callback_key(by_id[r[1]], r[2].isoformat()) for r in rows if r[4] == "sent"]
        sent: dict[int, datetime | None] = {}
        for chunk in chunks(keys):
            for task_id, sent_at in s.execute(
                select(OutboxItem.entity_id, OutboxItem.sent_at).where(
                    OutboxItem.idempotency_key.in_(chunk), OutboxItem.kind == "callback"
                )
            ):
                sent[task_id] = sent_at
        for task_id, inc_id, at, channel, state in rows:
            self.tasks[(inc_id, at)] = _Task(channel, state, sent.get(task_id))
        self.collected: dict[str, datetime | None] = {}
        self.s = s

    def _collected_until(self, channel: str) -> datetime | None:
        if channel not in self.collected:
            state = self.s.get(SourceState, collect_state_name(channel))
            self.collected[channel] = state.collected_until if state else None
        return self.collected[channel]

    def waits_for(self, incident_id: int, finding: dict[str, Any]) -> str | None:
        """The channel ``finding`` still waits for (None: it can be raised now)."""
        if finding["rule"] not in CHANNEL_RULES or not finding.get("resolution_at"):
            return None
        task = self.tasks.get((incident_id, parse_instant(finding["resolution_at"])))
        if task is None or task.channel is None:
            return None
        if task.state == "planned":
            return task.channel  # not delivered yet: its outcomes cannot be in
        if task.state != "sent":
            return None  # refused, no contact, superseded: nothing will come
        needed = parse_instant(finding["raised_at"])
        if task.sent_at is not None and task.sent_at > needed:
            needed = task.sent_at
        until = self._collected_until(task.channel)
        return None if until is not None and until >= needed else task.channel
