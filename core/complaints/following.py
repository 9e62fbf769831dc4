"""follow complaints: their tickets, notifications, root cause, follow-up call, escalation (R5).

For every complaint not finished yet, in one pass:

- its ticket reference is taken from its nonconformity, or from its own
  ``complaint_ticket`` outbox item once sent (``ticketed``); the team is
  then notified (outbox kind ``complaint_notice``, one item per recipient,
  sent by the workers' notifier with the report delivery's senders);
- the ticket's status is read: ``acknowledged`` once it left its first
  status; root cause and rectification are read back from its comments as
  the source's mapping says (``complaint.root_cause``,
  ``complaint.rectification``); when it is done the complaint is
  ``closed`` and a follow-up call to the customer is planned, exactly once
  (``follow_up_token`` and the outbox item are written in the same
  transaction; the item's idempotency key is the complaint's);
- the follow-up call's outcome comes back like any callback's (collect,
  then reconcile ties it to the complaint by its token): the first
  attempt that reached the customer makes it ``followed_up``;
- a complaint past its deadline whose ticket is not closed with a root
  cause and a rectification is escalated once (``escalated_at``, and a
  notice to the escalation list).

Every change is a :class:`~core.store.models.ComplaintEvent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.complaints.match import field_names, read_back
from core.complaints.raising import TICKET
from core.conf.model import ComplaintsConfig
from core.connector import TicketFields, TicketNotes, TicketNotesBatches
from core.errors import QloopError
from core.loop._bulk import chunks, insert_rows, table_of, update_by_id
from core.loop.common import StepResult, audit_row, log
from core.loop.outbox import incident_contact, message_payload, new_token, outbox_row
from core.loop.ticket_reads import read_tickets
from core.loop.track import _statuses
from core.records import Category, TicketNote, TicketStatus
from core.runtime import Runtime
from core.states import ComplaintState, OutboxState
from core.store.models import (
    AuditLog,
    Complaint,
    ComplaintEvent,
    Incident,
    Nonconformity,
    OutboxItem,
    Response,
)
from core.timeutil import iso

BATCH = 200
NOTICE = "complaint_notice"
"""Outbox kind of a notification (new complaint, escalation): sent by ``workers``, not push."""
FOLLOW_UP = "follow_up"
"""Outbox kind of the follow-up call (a callback message through a channel, sent by push)."""
PUSHED = (TICKET, FOLLOW_UP)
"""Outbox kinds of complaints that the push step sends (notices go through ``workers``)."""
READ_BACK_DAYS = 30
"""A closed ticket still lacking root cause or rectification is read this long after closing."""

DONE = (ComplaintState.CLOSED, ComplaintState.FOLLOWED_UP)


def state_of(c: Complaint) -> ComplaintState:
    """The complaint's state, from what has happened to it."""
    if c.follow_up_reached_at is not None:
        return ComplaintState.FOLLOWED_UP
    if c.closed_at is not None:
        return ComplaintState.CLOSED
    if c.rectified_at is not None:
        return ComplaintState.RECTIFIED
    if c.root_cause_at is not None:
        return ComplaintState.ANALYSED
    if c.acknowledged_at is not None:
        return ComplaintState.ACKNOWLEDGED
    if c.ticket_ref is not None:
        return ComplaintState.TICKETED
    return ComplaintState.RECEIVED


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class _Changes:
    """The complaints' new values, events, outbox items and audits of one batch, written
    together.

    The batch's complaints are plain objects (:func:`_batch`), each kept with its
    columns as read: :meth:`write` updates the columns whose value differs from it,
    as the ORM's flush would (one ``executemany`` per set of columns).
    """

    def __init__(self, rt: Runtime, result: StepResult) -> None:
        self.rt, self.result = rt, result
        self.now = rt.now()
        self.events: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []
        self.read: list[tuple[Complaint, dict[str, Any]]] = []

    def set(self, c: Complaint, kind: str, reason: str, **values: Any) -> None:
        """Give ``c`` new ``values``, with one event (nothing when nothing changes)."""
        changes = {
            name: [_plain(getattr(c, name)), _plain(value)]
            for name, value in values.items()
            if getattr(c, name) != value
        }
        if not changes:
            return
        for name, value in values.items():
            setattr(c, name, value)
        state = state_of(c)
        if state != c.state:
            changes["state"] = [c.state, state.value]
            c.state = state
        c.revision += 1
        c.updated_at = self.now
        self.events.append(
            {
                "complaint_id": c.id,
                "revision": c.revision,
                "at": self.now,
                "kind": kind,
                "changes": changes,
                "reason": reason,
            }
        )
        self.result.counts[kind] += 1

    def item(self, c: Complaint, key: str, kind: str, target: str, payload: dict[str, Any]) -> None:
        row = outbox_row(key=key, kind=kind, target=target, payload=payload, now=self.now)
        self.items.append({**row, "entity_id": c.id})
        self.result.counts[f"queued_{kind}"] += 1

    def write(self, s: Session) -> None:
        rows = []
        for c, before in self.read:
            changed = {n: value for n, v in before.items() if (value := getattr(c, n)) != v}
            if changed:
                rows.append({"id": c.id, **changed})
        update_by_id(s, Complaint, rows)
        insert_rows(s, ComplaintEvent, self.events)
        insert_rows(s, OutboxItem, self.items)
        insert_rows(s, AuditLog, self.audits)


def notice_items(
    changes: _Changes,
    conf: ComplaintsConfig,
    c: Complaint,
    inc: Incident,
    audience: str,
    known: set[str],
) -> None:
    """Queue ``audience``'s notice of ``c`` (``notify`` or ``escalate``): one item per address."""
    entries = conf.notify if audience == "notify" else conf.escalate
    if audience == "notify":
        subject = f"[qloop] 客户投诉 / Complaint on {inc.key}: {inc.title}"
        head = "A customer complaint was received and ticketed for your team."
    else:
        subject = f"[qloop] 投诉超期升级 / Complaint escalated: {inc.key}"
        head = "This complaint passed its deadline without a closed, rectified ticket."
    text = "\n".join(
        [
            head,
            f"Incident: {inc.key} — {inc.title}",
            f"Customer: {inc.customer or '—'}; service: {inc.service or '—'}",
            f"Why: {c.detail}",
            f"Received: {iso(c.received_at)}; deadline: {iso(c.deadline)}",
            f"Ticket: {c.ticket_ref or '(being created)'} {c.ticket_url or ''}".rstrip(),
            f"State: {c.state}",
        ]
    )
    for n, entry in enumerate(entries):
        for to in entry.to:
            key = notice_key(c, audience, n, to)
            if key in known:
                continue
            known.add(key)
            payload = {
                "audience": audience,
                "entry": n,
                "to": to,
                "subject": subject,
                "text": text,
                "complaint": c.key,
                "incident_key": inc.key,
                "ticket_ref": c.ticket_ref,
            }
            changes.item(c, key, NOTICE, audience, payload)


def notice_key(c: Complaint, audience: str, entry: int, to: str) -> str:
    """The idempotency key of ``c``'s notice to ``to`` (entry ``entry`` of ``audience``)."""
    return f"{c.key}#{audience}:{entry}:{to}"


def _known_notices(s: Session, conf: ComplaintsConfig, batch: list[Complaint]) -> set[str]:
    """The keys of the notices of ``batch`` already queued, among those the config can make.

    Looked up by idempotency key (its unique index): by ``entity_id`` SQLite scanned the
    whole outbox for each batch (no index on it), quadratic in the month.
    """
    wanted = [
        notice_key(c, audience, n, to)
        for c in batch
        for audience, entries in (("notify", conf.notify), ("escalate", conf.escalate))
        for n, entry in enumerate(entries)
        for to in entry.to
    ]
    known: set[str] = set()
    for chunk in chunks(wanted):
        known.update(
            s.scalars(
                select(OutboxItem.idempotency_key).where(
                    OutboxItem.idempotency_key.in_(chunk), OutboxItem.kind == NOTICE
                )
            )
        )
    return known


def _tickets_of(s: Session, batch: list[Complaint]) -> dict[int, tuple[str, str | None]]:
    """The ticket reference and URL qloop knows of each of ``batch``'s complaints still
    without one, by complaint id: its nonconformity's ticket, else its own ticket's
    outbox item once sent (two queries per batch)."""
    waiting = [c for c in batch if c.ticket_ref is None]
    ncs = {c.nonconformity_id for c in waiting if c.nonconformity_id is not None}
    keys = [c.key for c in waiting if c.nonconformity_id is None]
    by_nc: dict[int, tuple[str | None, str | None]] = {}
    if ncs:
        rows = s.execute(
            select(Nonconformity.id, Nonconformity.ticket_ref, Nonconformity.ticket_url).where(
                Nonconformity.id.in_(ncs)
            )
        )
        by_nc = {nc_id: (ref, url) for nc_id, ref, url in rows}
    by_key: dict[str, tuple[str | None, str | None]] = {}
    if keys:
        items = s.execute(
            select(
                OutboxItem.idempotency_key,
                OutboxItem.state,
                OutboxItem.provider_ref,
                OutboxItem.payload,
            ).where(OutboxItem.idempotency_key.in_(keys), OutboxItem.kind == TICKET)
        )
        by_key = {
            key: (ref, payload.get("ticket_url"))
            for key, state, ref, payload in items
            if state == OutboxState.SENT
        }
    found: dict[int, tuple[str, str | None]] = {}
    for c in waiting:
        if c.nonconformity_id is not None:
            ref, url = by_nc.get(c.nonconformity_id, (None, None))
        else:
            ref, url = by_key.get(c.key, (None, None))
        if ref is not None:
            found[c.id] = (ref, url)
    return found


def _statuses_of(rt: Runtime, batch: list[tuple[str, str]]) -> dict[str, TicketStatus | Exception]:
    """The status of each ``(ticket target, ticket ref)`` of a batch, by ref: one call per
    source that reads batches (:class:`~core.connector.TicketBatches`), else one per ticket
    (as the track step reads them; a failed read is its exception)."""
    rows = [SimpleNamespace(ticket_target=target, ticket_ref=ref) for target, ref in batch]
    return _statuses(rt, rows)


def _notes_of(
    rt: Runtime, batch: Sequence[tuple[str, str]]
) -> dict[str, list[TicketNote] | Exception]:
    """The comments of each ``(ticket target, ticket ref)`` of a batch, by ref, from the
    sources that can read them (:class:`~core.connector.TicketNotes`): one call per source
    that reads batches (:class:`~core.connector.TicketNotesBatches`), else one per ticket.

    A ticket the batch failed for (retriable) is read again on its own, as a retry of
    that attempt; a failed read is its exception; an error that is not a
    :class:`QloopError` goes up. A ref of a source that cannot read comments is absent.
    """
    by_target: dict[str, list[str]] = {}
    for target, ref in batch:
        by_target.setdefault(target, []).append(ref)
    return read_tickets(
        rt,
        "complaints: notes",
        by_target,
        lambda source: source.ticket_notes_many if isinstance(source, TicketNotesBatches) else None,
        lambda source: source.ticket_notes if isinstance(source, TicketNotes) else None,
    )


def _read(
    rt: Runtime,
    c: Complaint,
    names: list[str],
    status: TicketStatus | Exception,
    notes: list[TicketNote] | Exception | None,
) -> tuple[TicketStatus, list[TicketNote] | None, dict[str, Any]]:
    """The ticket's status and comments (read with its batch, an exception raised here;
    no comments when the source cannot read them) and, when the source can say, its
    fields ``names``."""
    assert c.ticket_ref is not None
    if isinstance(status, Exception):
        raise status
    if isinstance(notes, Exception):
        raise notes
    ref, source = c.ticket_ref, rt.source(c.ticket_target)
    fields: dict[str, Any] = {}
    if names and isinstance(source, TicketFields):
        fields = rt.call(lambda: source.ticket_fields(ref, names))
    return status, notes, fields


def _follow_up(
    rt: Runtime, conf: ComplaintsConfig, changes: _Changes, c: Complaint, inc: Incident
) -> None:
    """Plan ``c``'s follow-up call once: its token and its outbox item, or why there is none."""
    policy = rt.policy(c.policy)
    channel_name = conf.follow_up_channel or policy.callback_channel
    token = new_token()
    outcome: dict[str, Any] = {}
    reachable = False
    if channel_name is None:
        outcome = {"planned": False, "why": "no callback channel"}
    elif not rt.channel(channel_name).can_reach(incident_contact(inc)):
        outcome = {"planned": False, "why": "the channel cannot reach the customer"}
    else:
        reachable = True
    assert c.closed_at is not None
    changes.set(
        c,
        "follow_up_planned",
        f"ticket closed; follow-up call through {channel_name or '—'}"
        + ("" if reachable else f" not possible: {outcome['why']}"),
        follow_up_token=token,
        follow_up_channel=channel_name,
        follow_up_planned_at=changes.now,
        follow_up_outcome=outcome,
    )
    if reachable and channel_name is not None:
        key = f"{c.key}#follow-up"
        payload = message_payload(
            inc,
            kind="callback",
            key=key,
            token=token,
            resolved_at=c.closed_at,
            due_at=policy.callback_due(changes.now),
        )
        changes.item(c, key, FOLLOW_UP, channel_name, payload)


def _track_one(
    rt: Runtime,
    conf: ComplaintsConfig,
    changes: _Changes,
    c: Complaint,
    inc: Incident,
    known: set[str],
    ticket: tuple[str, str | None] | None,
    statuses: dict[str, TicketStatus | Exception],
    notes: dict[str, list[TicketNote] | Exception],
) -> None:
    now = changes.now
    if c.ticket_ref is None and ticket is not None:
        ref, url = ticket
        changes.set(
            c, "ticketed", f"ticket {ref} in {c.ticket_target}", ticket_ref=ref, ticket_url=url
        )
    if c.ticket_ref is None:
        return
    notice_items(changes, conf, c, inc, "notify", known)
    block = rt.source_mapping(c.ticket_target).get("complaint") or {}
    names = field_names(block.get("root_cause"), block.get("rectification"))
    try:
        status, found, fields = _read(rt, c, names, statuses[c.ticket_ref], notes.get(c.ticket_ref))
    except QloopError as exc:
        changes.result.errors.append(f"complaint {c.key} ({c.ticket_ref}): {exc}")
        log.warning("complaint %s: reading ticket %s failed: %s", c.key, c.ticket_ref, exc)
        return
    if c.ticket_status != status.status:
        c.ticket_status = status.status
    if c.acknowledged_at is None and status.category != Category.NEW:
        changes.set(
            c, "acknowledged", f"ticket {c.ticket_ref} is {status.status}", acknowledged_at=now
        )
    where = f"sources.{c.ticket_target}.mapping.complaint"
    for field, at_field, kind in (
        ("root_cause", "root_cause_at", "root_cause"),
        ("rectification", "rectified_at", "rectified"),
    ):
        back = read_back(found or [], block.get(field), f"{where}.{field}", fields)
        if back is not None and back[0] != getattr(c, field):
            text, at = back
            changes.set(
                c,
                kind,
                f"read back from ticket {c.ticket_ref}",
                **{field: text, at_field: getattr(c, at_field) or at or now},
            )
    if status.is_done and c.closed_at is None:
        closed = status.closed_at or now
        changes.set(c, "closed", f"ticket {c.ticket_ref} is {status.status}", closed_at=closed)
    if c.closed_at is not None and c.follow_up_token is None:
        _follow_up(rt, conf, changes, c, inc)


def _reached(s: Session, changes: _Changes, done: list[Complaint]) -> None:
    """Record the follow-up calls' outcomes: the first attempt that reached the customer."""
    tokens = {c.follow_up_token: c for c in done if c.follow_up_token}
    if not tokens:
        return
    answers = s.execute(
        select(
            Response.correlation_token,
            Response.reached,
            Response.confirmed,
            Response.score,
            Response.comment,
            Response.agent,
            Response.occurred_at,
        )
        .where(Response.correlation_token.in_(list(tokens)))
        .order_by(Response.occurred_at, Response.id)
    )
    seen: dict[str, list[Any]] = {}
    for resp in answers:
        assert resp.correlation_token is not None
        seen.setdefault(resp.correlation_token, []).append(resp)
    for token, attempts in seen.items():
        c = tokens[token]
        reached = next((r for r in attempts if r.reached), None)
        outcome = {
            **c.follow_up_outcome,
            "attempts": len(attempts),
            "reached": reached is not None,
        }
        if reached is not None:
            outcome.update(
                confirmed=reached.confirmed,
                score=reached.score,
                comment=reached.comment,
                agent=reached.agent,
            )
        changes.set(
            c,
            "followed_up" if reached is not None else "follow_up_attempt",
            "the follow-up call reached the customer"
            if reached is not None
            else f"{len(attempts)} follow-up attempt(s), customer not reached",
            follow_up_outcome=outcome,
            follow_up_reached_at=reached.occurred_at if reached is not None else None,
        )


def _escalate(
    conf: ComplaintsConfig, changes: _Changes, c: Complaint, inc: Incident, known: set[str]
) -> None:
    finished = c.closed_at is not None and c.root_cause and c.rectification
    if c.escalated_at is not None or finished or c.deadline >= changes.now:
        return
    changes.set(c, "escalated", f"deadline {iso(c.deadline)} passed", escalated_at=changes.now)
    changes.audits.append(
        audit_row(changes.rt, "complaint.escalated", "complaint", c.id, key=c.key)
    )
    notice_items(changes, conf, c, inc, "escalate", known)


_COMPLAINT = tuple(c for c in table_of(Complaint).c if c.name != "origins")
"""The complaint's columns this step reads and may change (``origins``: raise's alone)."""
_COMPLAINT_NAMES = tuple(c.name for c in _COMPLAINT)
_INCIDENT_NAMES = ("id", "source", "external_id", "key", "title", "priority", "contact_name",
                   "contact_phone", "contact_email", "service", "customer")  # fmt: skip
_INCIDENT = tuple(getattr(Incident, name) for name in _INCIDENT_NAMES)
"""The incident columns a complaint's notices and follow-up call name."""


def _batch(
    s: Session, last_id: int, changes: _Changes
) -> tuple[list[tuple[Complaint, Incident]], int | None]:
    """The next :data:`BATCH` unfinished complaints after ``last_id`` with their incidents
    (a complaint whose incident is gone is left out, as the join did), and the last id
    read (None: none left).

    Plain objects holding the columns as attributes, not ORM instances (~30 µs each
    to load and as much to flush): each complaint is kept in ``changes`` with its
    columns as read, so that :meth:`_Changes.write` writes what changed.
    """
    rows = s.execute(
        select(*_COMPLAINT)
        .where(
            Complaint.id > last_id,
            or_(
                Complaint.follow_up_reached_at.is_(None),
                Complaint.escalated_at.is_(None),
                Complaint.root_cause.is_(None),
                Complaint.rectification.is_(None),
            ),
        )
        .order_by(Complaint.id)
        .limit(BATCH)
    ).all()
    if not rows:
        return [], None
    ids = sorted({row.incident_id for row in rows})
    incidents = {
        row[0]: cast("Incident", SimpleNamespace(**dict(zip(_INCIDENT_NAMES, row, strict=True))))
        for row in s.execute(select(*_INCIDENT).where(Incident.id.in_(ids)))
    }
    batch: list[tuple[Complaint, Incident]] = []
    for row in rows:
        inc = incidents.get(row.incident_id)
        if inc is None:
            continue
        before = dict(zip(_COMPLAINT_NAMES, row, strict=True))
        c = cast("Complaint", SimpleNamespace(**before))
        changes.read.append((c, before))
        batch.append((c, inc))
    return batch, rows[-1].id


def follow_complaints(rt: Runtime) -> StepResult:
    """Follow every unfinished complaint's ticket, follow-up call and deadline."""
    result = StepResult("complaints follow")
    conf = rt.config.complaints
    if conf is None:
        return result
    now = rt.now()
    recent = now - timedelta(days=READ_BACK_DAYS)
    last_id = 0
    while True:
        with rt.db.session() as s:
            changes = _Changes(rt, result)
            rows, last = _batch(s, last_id, changes)
            if last is None:
                break
            last_id = last
            known = _known_notices(s, conf, [c for c, _ in rows])
            tickets = _tickets_of(s, [c for c, _ in rows])
            readable = [
                (c, inc)
                for c, inc in rows
                if c.closed_at is None
                or (c.closed_at >= recent and not (c.root_cause and c.rectification))
            ]
            # the statuses first, then the comments: one call each per source that reads
            # batches (the status read may move the ticket along)
            refs = [
                (c.ticket_target, c.ticket_ref or tickets.get(c.id, ("", None))[0])
                for c, _ in readable
            ]
            statuses = _statuses_of(rt, [(target, ref) for target, ref in refs if ref])
            read = [
                (target, ref)
                for target, ref in refs
                if ref and isinstance(statuses.get(ref), TicketStatus)
            ]
            notes = _notes_of(rt, read)
            for c, inc in readable:
                _track_one(rt, conf, changes, c, inc, known, tickets.get(c.id), statuses, notes)
            _reached(s, changes, [c for c, _ in rows if c.follow_up_reached_at is None])
            for c, inc in rows:
                _escalate(conf, changes, c, inc, known)
            changes.write(s)
        rt.report("complaints", len(rows))
    return result
