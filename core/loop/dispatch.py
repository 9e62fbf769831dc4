"""push: send what the outbox holds, once per idempotency key.

An item is committed as ``pending`` with the record it belongs to. The
dispatcher claims a batch (``sending``, committed), sends each item, and
records the outcome. A retriable failure schedules the item again after a
backoff that honours Retry-After; after ``outbox.max_attempts`` (or at once
on a fatal error) it is ``dead``: visible, replayable, never dropped.

A crash between sending and recording leaves items ``sending``: once their
claim is older than :data:`CLAIM_LEASE_S` they are *in doubt*, and the
dispatcher asks the provider (``lookup``) before sending again; a provider
that cannot be asked gets the same idempotency key again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import QloopError, RetriableError
from core.loop.common import StepResult, audit, log
from core.loop.outbox import message_from_payload
from core.records import SendResult, TicketRef, TicketRequest
from core.retry import outbox_delay
from core.runtime import Runtime
from core.store.models import CallbackTask, Nonconformity, OutboxItem, SurveyInvitation
from core.timeutil import parse_instant

BATCH = 200
CLAIM_LEASE_S = 300
"""A claim older than this, still ``sending``, is in doubt (its process died)."""

_ENTITY = {"callback": CallbackTask, "survey": SurveyInvitation, "ticket": Nonconformity}


def ticket_from_payload(payload: dict[str, Any]) -> TicketRequest:
    return TicketRequest(
        dedup_key=payload["dedup_key"],
        title=payload["title"],
        description=payload["description"],
        incident_external_id=payload["incident_external_id"],
        incident_key=payload["incident_key"],
        rule=payload["rule"],
        severity=payload["severity"],
        raised_at=parse_instant(payload["raised_at"]),
        deadline=parse_instant(payload["deadline"]),
        labels=tuple(payload.get("labels", ())),
    )


def _send(rt: Runtime, item: OutboxItem) -> str:
    """Send one item; returns the provider's reference."""
    if item.kind == "ticket":
        ref: TicketRef = rt.call(
            lambda: rt.source(item.target).create_ticket(ticket_from_payload(item.payload))
        )
        item.payload = {**item.payload, "ticket_url": ref.url}
        return ref.ref
    message = message_from_payload(item.payload)
    sent: SendResult = rt.call(lambda: rt.channel(item.target).send(message))
    return sent.provider_ref


def _lookup(rt: Runtime, item: OutboxItem) -> str | None:
    """Ask the provider whether it holds the item; raises NotImplementedError if it can't say."""
    if item.kind == "ticket":
        raise NotImplementedError  # create_ticket searches its dedup key itself
    found = rt.call(lambda: rt.channel(item.target).lookup(item.idempotency_key))
    return found.provider_ref if found else None


def _mark_sent(s: Session, item: OutboxItem, ref: str, now: datetime) -> None:
    item.state, item.provider_ref, item.sent_at, item.last_error = "sent", ref, now, None
    entity = s.get(_ENTITY[item.kind], item.entity_id)
    if entity is None:
        return
    if isinstance(entity, Nonconformity):
        entity.state = "ticketed" if entity.state in ("open", "dead") else entity.state
        entity.ticket_ref, entity.ticket_url = ref, item.payload.get("ticket_url")
        entity.updated_at = now
    else:
        entity.state = "sent" if entity.state in ("planned", "dead") else entity.state
        entity.provider_ref = ref


def _mark_failed(rt: Runtime, s: Session, item: OutboxItem, exc: Exception, now: datetime) -> str:
    item.attempts += 1
    item.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    retriable = isinstance(exc, RetriableError) or not isinstance(exc, QloopError)
    if retriable and item.attempts < rt.config.outbox_max_attempts:
        delay = outbox_delay(
            item.attempts,
            rt.config.outbox_backoff_initial_s,
            rt.config.outbox_backoff_max_s,
            getattr(exc, "retry_after", None),
        )
        item.state, item.next_attempt_at = "pending", now + timedelta(seconds=delay)
        return "retry_later"
    item.state = "dead"
    entity = s.get(_ENTITY[item.kind], item.entity_id)
    if entity is not None and entity.state in ("planned", "open"):
        entity.state = "dead"
    audit(
        s,
        rt,
        "outbox.dead",
        "outbox_item",
        item.id,
        key=item.idempotency_key,
        error=item.last_error,
    )
    log.error(
        "outbox item %s (%s) dead-lettered: %s", item.id, item.idempotency_key, item.last_error
    )
    return "dead"


def _claim(rt: Runtime, kinds: Iterable[str] | None) -> list[int]:
    now = rt.now()
    with rt.db.session() as s:
        query = (
            select(OutboxItem.id)
            .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.id)
            .limit(BATCH)
        )
        if kinds:
            query = query.where(OutboxItem.kind.in_(list(kinds)))
        ids = list(s.scalars(query))
        if ids:
            # the state guard makes a racing dispatcher's claim a no-op
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids), OutboxItem.state == "pending")
                .values(state="sending", claimed_at=now)
            )
        return ids


def recover_in_doubt(rt: Runtime, result: StepResult) -> None:
    """Settle items left ``sending`` by a process that died before recording the outcome."""
    now = rt.now()
    stale = now - timedelta(seconds=CLAIM_LEASE_S)
    with rt.db.session() as s:
        items = list(
            s.scalars(
                select(OutboxItem).where(
                    OutboxItem.state == "sending", OutboxItem.claimed_at <= stale
                )
            )
        )
        for item in items:
            result.counts["in_doubt"] += 1
            try:
                ref = _lookup(rt, item)
            except NotImplementedError:
                ref = None
                audit(
                    s,
                    rt,
                    "outbox.in_doubt_resend",
                    "outbox_item",
                    item.id,
                    key=item.idempotency_key,
                )
            except Exception as exc:
                _mark_failed(rt, s, item, exc, now)
                continue
            if ref is not None:
                _mark_sent(s, item, ref, now)
                audit(s, rt, "outbox.in_doubt_found", "outbox_item", item.id, ref=ref)
            else:
                item.state, item.next_attempt_at = "pending", now


def push(rt: Runtime, kinds: Iterable[str] | None = None) -> StepResult:
    """Send every due outbox item (of ``kinds``, default all)."""
    result = StepResult("push")
    recover_in_doubt(rt, result)
    seen: set[int] = set()
    while True:
        ids = [i for i in _claim(rt, kinds) if i not in seen]
        if not ids:
            break
        seen.update(ids)
        with rt.db.session() as s:
            for item in s.scalars(
                select(OutboxItem).where(OutboxItem.id.in_(ids), OutboxItem.state == "sending")
            ):
                now = rt.now()
                try:
                    ref = _send(rt, item)
                except Exception as exc:
                    result.counts[_mark_failed(rt, s, item, exc, now)] += 1
                    continue
                _mark_sent(s, item, ref, now)
                result.counts[f"sent_{item.kind}"] += 1
        rt.report("push", len(seen))
    return result


def replay_dead(rt: Runtime, ids: Iterable[int] | None = None, actor: str = "cli") -> int:
    """Put dead items (all, or ``ids``) back to pending with a fresh attempt count."""
    with rt.db.session() as s:
        query = select(OutboxItem).where(OutboxItem.state == "dead")
        if ids is not None:
            query = query.where(OutboxItem.id.in_(list(ids)))
        items = list(s.scalars(query))
        for item in items:
            item.state, item.attempts, item.next_attempt_at = "pending", 0, rt.now()
            entity = s.get(_ENTITY[item.kind], item.entity_id)
            if entity is not None and entity.state == "dead":
                entity.state = "open" if isinstance(entity, Nonconformity) else "planned"
            audit(s, rt, "outbox.replay", "outbox_item", item.id, actor=actor)
        return len(items)
