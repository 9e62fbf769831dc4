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

Complaints (:mod:`core.complaints`) add ``complaint_ticket`` (a ticket of
its own, created like a nonconformity's) and ``follow_up`` (the follow-up
call, a callback message); their notices (``complaint_notice``) are sent
by the workers' notifier, never claimed here.

Besides callbacks, surveys and tickets, the outbox carries what follows a
ticket once it exists: ``ticket_comment`` (a changed finding, written as a
comment) and ``ticket_resolve`` (a withdrawn finding: comment, then resolve
in the ITSM). Both wait for their nonconformity's ticket to be created, and
the source writes each comment once per idempotency key (the key is stamped
in the comment and looked for before writing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.conf.masking import scrub
from core.connector import CampaignSurveys, Channel, SendMany, TicketBatches
from core.errors import FatalError, QloopError, RetriableError
from core.loop._bulk import chunks, insert_rows, update_by_id
from core.loop.common import (
    Partition,
    StepResult,
    audit,
    audit_row,
    in_partition,
    log,
    replaying,
)
from core.loop.outbox import message_from_payload
from core.records import SendResult, TicketComment, TicketRef, TicketRequest
from core.retry import outbox_delay
from core.runtime import Runtime
from core.states import CallbackState, InvitationState, NcState, OutboxState
from core.store.models import (
    AuditLog,
    CallbackTask,
    CampaignMember,
    Nonconformity,
    OutboxItem,
    SurveyInvitation,
)
from core.timeutil import parse_instant

BATCH = 200
CLAIM_LEASE_S = 300
"""A claim older than this, still ``sending``, is in doubt (its process died)."""


@dataclass(slots=True)
class _Item:
    """What push reads of an outbox item (a plain row: no ORM instance, no flush)."""

    id: int
    kind: str
    target: str
    entity_id: int
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int


_ITEM_COLUMNS = (
    OutboxItem.id,
    OutboxItem.kind,
    OutboxItem.target,
    OutboxItem.entity_id,
    OutboxItem.idempotency_key,
    OutboxItem.payload,
    OutboxItem.attempts,
)


def _items(s: Session, *where: Any) -> list[_Item]:
    """The outbox items matching ``where``, in id order."""
    query = select(*_ITEM_COLUMNS).where(*where).order_by(OutboxItem.id)
    return [_Item(*row) for row in s.execute(query)]


def _json_value(text: str | None) -> Any:
    """A JSON column's stored text decoded: orjson (the values ``json.loads`` gives, faster),
    else ``json.loads`` for what orjson refuses (NaN, integers beyond 64 bits); SQL NULL is
    None, as SQLAlchemy's JSON type reads it."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_CLAIMED_SQL = (
    "SELECT id, kind, target, entity_id, idempotency_key, payload, attempts "
    "FROM outbox_item WHERE id IN ({marks}) AND state || '' = 'sending' ORDER BY id"
)


def _claimed(s: Session, ids: Sequence[int]) -> list[_Item]:
    """The items ``ids`` still ``sending`` (this push's claim), in id order.

    On SQLite read through the driver (one statement, the payload decoded by
    :func:`_json_value`: no SQLAlchemy row or type handling per
    item); elsewhere :func:`_items`. ``state || ''`` keeps SQLite on the ids,
    as in :func:`take`.
    """
    conn = s.connection()
    if conn.dialect.name != "sqlite" or not ids:
        return _items(s, OutboxItem.id.in_(ids), OutboxItem.state == "sending")
    sql = _CLAIMED_SQL.format(marks=", ".join("?" * len(ids)))
    return [
        _Item(i, kind, target, entity, key, _json_value(p), attempts)
        for i, kind, target, entity, key, p, attempts in conn.exec_driver_sql(sql, tuple(ids))
    ]


Item = OutboxItem | _Item
"""An outbox item as push handles it (tests hand it ORM objects too)."""

Entity = CallbackTask | SurveyInvitation | Nonconformity | CampaignMember
_ENTITY: dict[str, type[Entity]] = {
    "callback": CallbackTask,
    "survey": SurveyInvitation,
    "ticket": Nonconformity,
    "campaign_invite": CampaignMember,
}
"""Kinds whose outcome changes their entity's state (sent, dead)."""
REMIND = "campaign_remind"
"""A campaign reminder: bumps its member's ``reminders``; the channel guards each round."""
FOLLOW_UPS = ("ticket_comment", "ticket_resolve")
"""Kinds that follow a nonconformity's ticket; they leave the nonconformity's state alone."""
TICKETS = ("ticket", "complaint_ticket")
"""Kinds that create a ticket in a source (a nonconformity's, a complaint's own)."""
MESSAGES = ("callback", "survey", "follow_up")
"""Kinds sent as a message through their target channel (no campaign survey): batched."""
ELSEWHERE = ("complaint_notice",)
"""Kinds another sender delivers (the workers' complaint notifier): push never claims them."""


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


TicketRefs = Mapping[int, str | None]
"""The ticket references of a batch's nonconformities, read before it is sent."""


def _batch_ticket_refs(s: Session, items: Sequence[Item]) -> dict[int, str | None]:
    """The ticket reference of each nonconformity the batch's follow-ups go to (one query
    per 1,000 of them, instead of one session and query per item)."""
    wanted = sorted({item.entity_id for item in items if item.kind in FOLLOW_UPS})
    refs: dict[int, str | None] = {}
    for chunk in chunks(wanted):
        query = select(Nonconformity.id, Nonconformity.ticket_ref).where(
            Nonconformity.id.in_(chunk)
        )
        for nc_id, ref in s.execute(query):
            refs[nc_id] = ref
    return refs


def _ticket_ref(rt: Runtime, nc_id: int, known: TicketRefs | None = None) -> str:
    """The ITSM reference of nonconformity ``nc_id``'s ticket (retriable until it exists).

    ``known``: the references read for the batch; one not there, or not created
    when it was read, is read again now.
    """
    ref = known.get(nc_id) if known is not None else None
    if ref is not None:
        return ref
    with rt.db.session() as s:
        ref = s.scalar(select(Nonconformity.ticket_ref).where(Nonconformity.id == nc_id))
    if ref is None:
        msg = f"nonconformity {nc_id}: its ticket is not created yet"
        raise RetriableError(msg)
    return ref


def _follow_up(rt: Runtime, item: Item, refs: TicketRefs | None = None) -> str:
    """Comment (``ticket_comment``) or comment and resolve (``ticket_resolve``) a ticket."""
    ref = _ticket_ref(rt, item.entity_id, refs)
    comment = TicketComment(key=item.idempotency_key, text=str(item.payload["text"]))
    source = rt.source(item.target)
    if item.kind == "ticket_comment":
        return rt.call(lambda: source.comment_ticket(ref, comment))
    status: str = rt.call(lambda: source.resolve_ticket(ref, comment))
    return f"{ref}:{status}"


def _channel_of(rt: Runtime, item: Item) -> Channel:
    """The channel an item goes through: a campaign invitation on its campaign's survey."""
    channel = rt.channel(item.target)
    campaign = item.kind in ("campaign_invite", REMIND)
    survey_id = item.payload.get("survey_id") if campaign else None
    if survey_id is None:
        return channel
    if not isinstance(channel, CampaignSurveys):
        msg = f"channels.{item.target}: cannot send to another survey (campaign survey_id)"
        raise FatalError(msg)
    return channel.for_survey(int(survey_id))


def _send(
    rt: Runtime, item: Item, first: Exception | None = None, refs: TicketRefs | None = None
) -> str:
    """Send one item; returns the provider's reference.

    ``first`` is what a batch call answered for the item (a retriable error):
    the item is then sent again on its own, as a retry of that attempt.
    ``refs``: the batch's ticket references (:func:`_batch_ticket_refs`).
    """
    if item.kind in FOLLOW_UPS:
        return _follow_up(rt, item, refs)
    if item.kind in TICKETS:
        request = ticket_from_payload(item.payload)
        source = rt.source(item.target)
        ref: TicketRef = rt.call(replaying(first, lambda: source.create_ticket(request)))
        item.payload = {**item.payload, "ticket_url": ref.url}
        return ref.ref
    if item.kind == REMIND:
        return _remind(rt, item)
    message = message_from_payload(item.payload)
    channel = _channel_of(rt, item)
    sent: SendResult = rt.call(replaying(first, lambda: channel.send(message)))
    return sent.provider_ref


def _remind(rt: Runtime, item: Item) -> str:
    """A campaign reminder: ``<participant ref>:<round>:<reminded|already|answered>``."""
    channel = _channel_of(rt, item)
    if not isinstance(channel, CampaignSurveys):
        msg = f"channels.{item.target}: this channel cannot send campaign reminders"
        raise FatalError(msg)
    ref, round_no = str(item.payload["provider_ref"]), int(item.payload["round"])
    done = rt.call(lambda: channel.remind(ref, round_no, int(item.payload["min_days"])))
    return f"{ref}:{round_no}:{done}"


Answer = str | Exception
"""What a batch call answered for one item: its provider reference, or the error."""


def _send_batches(rt: Runtime, items: Sequence[Item]) -> dict[int, Answer]:
    """Send the items whose connector takes batches, one call per connector; answers by item id.

    Callbacks, surveys and complaints' follow-up calls go to a
    :class:`SendMany` channel, tickets (a nonconformity's, a complaint's)
    to a :class:`TicketBatches` source; other items (ticket comments,
    campaign invitations, connectors without batches) get no answer here
    and are sent one by one. A batch call that fails as a whole answers
    nothing.
    """
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        if item.kind in MESSAGES or item.kind in TICKETS:
            groups.setdefault((item.kind, item.target), []).append(item)
    answers: dict[int, Answer] = {}
    for (kind, target), group in groups.items():
        try:
            if kind in TICKETS:
                answers.update(_ticket_batch(rt, target, group))
            else:
                answers.update(_message_batch(rt, target, group))
        except Exception as exc:  # each item is sent on its own below, with its own retries
            log.warning("push: batch of %d %s to %s failed: %s", len(group), kind, target, exc)
    return answers


def _message_batch(rt: Runtime, target: str, group: list[Item]) -> dict[int, Answer]:
    channel = rt.channel(target)
    if not isinstance(channel, SendMany):
        return {}
    messages = [message_from_payload(item.payload) for item in group]
    results = rt.call(lambda: channel.send_many(messages))
    return {
        item.id: r if isinstance(r, Exception) else r.provider_ref
        for item, r in zip(group, results, strict=True)
    }


def _ticket_batch(rt: Runtime, target: str, group: list[Item]) -> dict[int, Answer]:
    source = rt.source(target)
    if not isinstance(source, TicketBatches):
        return {}
    requests = [ticket_from_payload(item.payload) for item in group]
    results = rt.call(lambda: source.create_tickets(requests))
    answers: dict[int, Answer] = {}
    for item, r in zip(group, results, strict=True):
        if isinstance(r, Exception):
            answers[item.id] = r
        else:
            item.payload = {**item.payload, "ticket_url": r.url}
            answers[item.id] = r.ref
    return answers


def _deliver(rt: Runtime, item: Item, answer: Answer | None, refs: TicketRefs | None = None) -> str:
    """The item's provider reference: its batch's answer, else sent (or retried) on its own."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, RetriableError):
        return _send(rt, item, first=answer, refs=refs)
    if answer is not None:
        raise answer
    return _send(rt, item, refs=refs)


def _lookup(rt: Runtime, item: Item) -> str | None:
    """Ask the provider whether it holds the item; raises NotImplementedError if it can't say."""
    if item.kind == REMIND:
        raise NotImplementedError  # the channel's round guard makes sending again safe
    if item.kind in TICKETS or item.kind in FOLLOW_UPS:
        raise NotImplementedError  # the source searches the dedup or comment key itself
    channel = _channel_of(rt, item)
    found = rt.call(lambda: channel.lookup(item.idempotency_key))
    return found.provider_ref if found else None


class _Outcomes:
    """The outcomes of a batch of claimed items, recorded with a few set-based statements.

    ``sent``, ``failed`` and ``requeue`` decide each item's new state in
    memory; :meth:`write` then reads the state of the items' tasks,
    invitations and nonconformities, applies the outcomes to them in order,
    and stores everything in the caller's transaction, which commits it all
    together (as one ORM flush did).
    """

    def __init__(self, rt: Runtime, s: Session, items: Sequence[Item]) -> None:
        self.rt, self.s, self.items = rt, s, items
        self.item_rows: dict[int, dict[str, Any]] = {}
        self.effects: list[tuple[Item, str | None, datetime | None]] = []
        """(item, provider ref, when) sent, or (item, None, None) dead-lettered, in order."""
        self.audits: list[dict[str, Any]] = []

    def _item(self, item: Item) -> dict[str, Any]:
        """The columns of ``item`` this batch changes (only those are written)."""
        return self.item_rows.setdefault(item.id, {"id": item.id})

    def sent(self, item: Item, ref: str, now: datetime) -> None:
        """Record that the provider holds ``item`` under ``ref``."""
        row = self._item(item)
        row.update(state="sent", provider_ref=ref, sent_at=now, last_error=None)
        if item.kind in TICKETS:
            row["payload"] = item.payload  # _send added the ticket's URL
        self.effects.append((item, ref, now))

    def failed(self, item: Item, exc: Exception, now: datetime) -> str:
        """Record a failed attempt: again later after a backoff, or dead; returns which."""
        rt, row = self.rt, self._item(item)
        row["attempts"] = row.get("attempts", item.attempts) + 1
        row["last_error"] = scrub(f"{type(exc).__name__}: {exc}")[:2000]
        retriable = isinstance(exc, RetriableError) or not isinstance(exc, QloopError)
        if retriable and row["attempts"] < rt.config.outbox_max_attempts:
            delay = outbox_delay(
                row["attempts"],
                rt.config.outbox_backoff_initial_s,
                rt.config.outbox_backoff_max_s,
                exc.retry_after if isinstance(exc, RetriableError) else None,
            )
            row.update(state="pending", next_attempt_at=now + timedelta(seconds=delay))
            return "retry_later"
        row["state"] = "dead"
        self.effects.append((item, None, None))
        self.audit("outbox.dead", item, key=item.idempotency_key, error=row["last_error"])
        log.error(
            "outbox item %s (%s) dead-lettered: %s",
            item.id,
            item.idempotency_key,
            row["last_error"],
        )
        return "dead"

    def requeue(self, item: Item, now: datetime) -> None:
        """Make ``item`` due again now."""
        self._item(item).update(state="pending", next_attempt_at=now)

    def audit(self, action: str, item: Item, **detail: object) -> None:
        self.audits.append(audit_row(self.rt, action, "outbox_item", item.id, "qloop", **detail))

    def _entity_rows(self) -> dict[str, list[dict[str, Any]]]:
        """The effects on tasks, invitations and nonconformities, as column updates per kind."""
        effects = [e for e in self.effects if e[0].kind in _ENTITY]
        wanted: dict[str, set[int]] = {}
        for item, _, _ in effects:
            wanted.setdefault(item.kind, set()).add(item.entity_id)
        state: dict[tuple[str, int], str] = {}
        for kind, ids in wanted.items():
            model = _ENTITY[kind]
            for chunk in chunks(sorted(ids)):
                for entity_id, current in self.s.execute(
                    select(model.id, model.state).where(model.id.in_(chunk))
                ):
                    state[(kind, entity_id)] = current
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for item, ref, now in effects:
            key = (item.kind, item.entity_id)
            found = state.get(key)
            if found is None:
                continue  # the entity is gone: only the item is recorded
            row = rows.setdefault(key, {"id": item.entity_id})
            if ref is None:  # dead-lettered
                if found in ("planned", "open"):
                    row["state"] = state[key] = "dead"
            elif item.kind == "ticket":
                if found in ("open", "dead"):
                    row["state"] = state[key] = "ticketed"
                row.update(
                    ticket_ref=ref, ticket_url=item.payload.get("ticket_url"), updated_at=now
                )
            else:
                if found in ("planned", "dead"):
                    row["state"] = state[key] = "sent"
                row["provider_ref"] = ref
                if item.kind == "campaign_invite":
                    row["invited_at"] = now
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for (kind, _), row in rows.items():
            by_kind.setdefault(kind, []).append(row)
        return by_kind

    def _reminder_rows(self) -> list[dict[str, Any]]:
        """Members reminded in this batch: their count of reminders and when (never lowered)."""
        rows: dict[int, dict[str, Any]] = {}
        for item, ref, now in self.effects:
            if item.kind != REMIND or ref is None or ref.endswith(":answered"):
                continue
            row = rows.setdefault(item.entity_id, {"id": item.entity_id, "reminders": 0})
            row["reminders"] = max(row["reminders"], int(item.payload["round"]))
            row["reminded_at"] = now
        return list(rows.values())

    def write(self) -> None:
        """Store every outcome (the caller's transaction commits them)."""
        update_by_id(self.s, OutboxItem, list(self.item_rows.values()))
        for kind, rows in self._entity_rows().items():
            update_by_id(self.s, _ENTITY[kind], rows)
        update_by_id(self.s, CampaignMember, self._reminder_rows())
        insert_rows(self.s, AuditLog, self.audits)


def _due(
    s: Session,
    kinds: Iterable[str] | None,
    now: datetime,
    limit: int | None,
    partition: Partition | None = None,
) -> list[int]:
    """The ids of the items (of ``kinds``, default all push sends; of ``partition``, default
    all) pending and due at ``now``."""
    query = (
        select(OutboxItem.id)
        .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at <= now)
        .where(in_partition(OutboxItem.entity_id, partition))
        .order_by(OutboxItem.id)
    )
    if limit is not None:
        query = query.limit(limit)
    if kinds:
        query = query.where(OutboxItem.kind.in_(list(kinds)))
    else:
        query = query.where(OutboxItem.kind.not_in(ELSEWHERE))
    return list(s.scalars(query))


def _claim(rt: Runtime, kinds: Iterable[str] | None) -> list[int]:
    """Claim the first :data:`BATCH` due items (of ``kinds``); the ids this claim moved."""
    now = rt.now()
    with rt.db.session() as s:
        return take(s, _due(s, kinds, now, BATCH), now)


def _claims(
    rt: Runtime, kinds: Iterable[str] | None, partition: Partition | None = None
) -> Iterator[list[int]]:
    """Claim every due item (of ``kinds``) a batch at a time, in id order; yields each claim.

    The due ids are read once per round (one index range and one sort, not
    one per batch: reading the first :data:`BATCH` of them each time sorted
    every pending item per batch), then claimed :data:`BATCH` at a time by
    :func:`take`, which moves only the ids still pending and due. When a
    round is used up the due ids are read again, so items that became due
    or were added meanwhile are sent too; an item this push already claimed
    is never claimed again by it (a retry waits for the next push).
    """
    seen: set[int] = set()
    while True:
        with rt.db.session() as s:
            due = [i for i in _due(s, kinds, rt.now(), None, partition) if i not in seen]
        if not due:
            return
        for start in range(0, len(due), BATCH):
            now = rt.now()
            with rt.db.session() as s:
                ids = take(s, due[start : start + BATCH], now)
            if ids:
                seen.update(ids)
                yield ids


def take(s: Session, ids: list[int], now: datetime) -> list[int]:
    """Claim the items ``ids`` still pending; only the ids this claim moved to ``sending``.

    Another dispatcher (a dispatch job, the campaigns or complaints job
    pushing their own kinds) may have claimed some of them between the
    select and this update: the state guard leaves those out, and so must
    the ids returned, or both would send them. An item claimed, failed and
    put back to wait in between is not due: the guard on
    ``next_attempt_at`` leaves it to wait.
    """
    if not ids:
        return []
    won = s.scalars(
        update(OutboxItem)
        .where(
            OutboxItem.id.in_(ids),
            # ``state || ''``: by the ids, not by ix_outbox_due (which SQLite would
            # pick for ``state = ?``, walking every pending item for each claim)
            OutboxItem.state.concat("") == "pending",
            OutboxItem.next_attempt_at <= now,
        )
        .values(state="sending", claimed_at=now)
        .returning(OutboxItem.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(won)


def recover_in_doubt(rt: Runtime, result: StepResult, partition: Partition | None = None) -> None:
    """Settle items (of ``partition``) left ``sending`` by a process that died before recording
    the outcome."""
    now = rt.now()
    stale = now - timedelta(seconds=CLAIM_LEASE_S)
    with rt.db.session() as s:
        items = _items(
            s,
            OutboxItem.state == "sending",
            OutboxItem.claimed_at <= stale,
            OutboxItem.kind.not_in(ELSEWHERE),
            in_partition(OutboxItem.entity_id, partition),
        )
        outcomes = _Outcomes(rt, s, items)
        for item in items:
            result.counts["in_doubt"] += 1
            try:
                ref = _lookup(rt, item)
            except NotImplementedError:
                ref = None
                outcomes.audit("outbox.in_doubt_resend", item, key=item.idempotency_key)
            except Exception as exc:
                outcomes.failed(item, exc, now)
                continue
            if ref is not None:
                outcomes.sent(item, ref, now)
                outcomes.audit("outbox.in_doubt_found", item, ref=ref)
            else:
                outcomes.requeue(item, now)
        outcomes.write()


def push(
    rt: Runtime, kinds: Iterable[str] | None = None, partition: Partition | None = None
) -> StepResult:
    """Send every due outbox item (of ``kinds``, default all).

    With ``partition`` ``(k, n)``, only the items whose ``entity_id % n == k``
    (:func:`workers.jobs.dispatch_part`): a nonconformity's ticket and the
    comments that follow it share its id, so they stay in one partition, in
    order. Each item is claimed by one compare-and-set (:func:`take`), so
    pushes at once, partitioned or not, never send an item twice.
    """
    result = StepResult("push")
    recover_in_doubt(rt, result, partition)
    sent = 0
    for ids in _claims(rt, kinds, partition):
        with rt.db.session() as s:
            items = _claimed(s, ids)
            outcomes = _Outcomes(rt, s, items)
            refs = _batch_ticket_refs(s, items)
            answers = _send_batches(rt, items)
            for item in items:
                now = rt.now()
                try:
                    ref = _deliver(rt, item, answers.get(item.id), refs)
                except Exception as exc:
                    result.counts[outcomes.failed(item, exc, now)] += 1
                    continue
                outcomes.sent(item, ref, now)
                result.counts[f"sent_{item.kind}"] += 1
            outcomes.write()
        sent += len(ids)
        rt.report("push", sent)
    return result


def replay_dead(rt: Runtime, ids: Iterable[int] | None = None, actor: str = "cli") -> int:
    """Put dead items (all, or ``ids``) back to pending with a fresh attempt count."""
    with rt.db.session() as s:
        query = select(OutboxItem).where(OutboxItem.state == OutboxState.DEAD)
        if ids is not None:
            query = query.where(OutboxItem.id.in_(list(ids)))
        items = list(s.scalars(query))
        for item in items:
            item.state, item.attempts, item.next_attempt_at = OutboxState.PENDING, 0, rt.now()
            audit(s, rt, "outbox.replay", "outbox_item", item.id, actor=actor)
            if item.kind not in _ENTITY:
                continue
            entity = cast("Entity | None", s.get(_ENTITY[item.kind], item.entity_id))
            if entity is not None and entity.state == "dead":  # every entity state has DEAD
                if isinstance(entity, Nonconformity):
                    entity.state = NcState.OPEN
                elif isinstance(entity, CallbackTask):
                    entity.state = CallbackState.PLANNED
                elif isinstance(entity, CampaignMember):
                    entity.state = "planned"
                else:
                    entity.state = InvitationState.PLANNED
        return len(items)
