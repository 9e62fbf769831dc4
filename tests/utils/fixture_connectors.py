"""Scripted in-memory connectors for loop tests: incidents and answers written by hand.

``WORLD`` holds what the fake remote systems know; tests fill it, register
the ``fixture`` types, and run the real loop against them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core import registry
from core.connector import ConnectorContext
from core.errors import FatalError
from core.records import (
    Category,
    CollectedBatch,
    Contact,
    IncidentRecord,
    MessageKind,
    OutboundMessage,
    Outcome,
    PulledBatch,
    SendResult,
    StatusChange,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)


@dataclass
class World:
    incidents: list[IncidentRecord] = field(default_factory=list)
    answers: dict[str, list[Outcome]] = field(default_factory=dict)
    """By incident key; or by a message's idempotency key (e.g. a complaint's follow-up call),
    which then wins over the incident's."""
    sent: dict[str, OutboundMessage] = field(default_factory=dict)
    send_calls: int = 0
    send_keys: list[str] = field(default_factory=list)  # every send call's idempotency key
    send_errors: list[Exception] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    tickets: dict[str, TicketRequest] = field(default_factory=dict)
    ticket_status: dict[str, str] = field(default_factory=dict)
    create_calls: int = 0
    comments: dict[str, list[str]] = field(default_factory=dict)  # by ticket ref
    comment_calls: int = 0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


WORLD = World()


class FixtureSource:
    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        self.name = name

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        recs = [r for r in WORLD.incidents if cursor is None or r.updated_at.isoformat() >= cursor]
        if recs:
            yield PulledBatch(recs, max(r.updated_at for r in recs).isoformat())

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        WORLD.create_calls += 1
        for ref, known in WORLD.tickets.items():
            if known.dedup_key == ticket.dedup_key:
                return TicketRef(ref)
        ref = f"QA-{len(WORLD.tickets) + 1}"
        WORLD.tickets[ref] = ticket
        WORLD.ticket_status[ref] = "Open"
        return TicketRef(ref)

    def ticket_status(self, ref: str) -> TicketStatus:
        if ref not in WORLD.ticket_status:
            msg = f"no ticket {ref}"
            raise FatalError(msg)
        status = WORLD.ticket_status[ref]
        cat = {"Closed": Category.CLOSED, "Resolved": Category.RESOLVED}.get(
            status, Category.IN_PROGRESS
        )
        return TicketStatus(ref, status, cat)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        WORLD.comment_calls += 1
        if ref not in WORLD.ticket_status:
            msg = f"no ticket {ref}"
            raise FatalError(msg)
        said = WORLD.comments.setdefault(ref, [])
        for n, text in enumerate(said):
            if comment.marker in text:
                return f"{ref}#{n}"
        said.append(comment.stamped())
        return f"{ref}#{len(said) - 1}"

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        return [TicketNote(text) for text in WORLD.comments.get(ref, [])]

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        self.comment_ticket(ref, comment)
        if WORLD.ticket_status[ref] not in ("Closed", "Resolved"):
            WORLD.ticket_status[ref] = "Resolved"
        return WORLD.ticket_status[ref]

    def close(self) -> None:
        pass


class FixtureChannel:
    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        self.name = name
        self.contact = options.get("contact", "phone")
        role: MessageKind = options["role"]
        self.kinds: frozenset[MessageKind] = frozenset({role})

    def can_reach(self, contact: Contact) -> bool:
        value = contact.phone if self.contact == "phone" else contact.email
        return bool(value) and (self.contact == "phone" or str(value).isascii())

    def send(self, message: OutboundMessage) -> SendResult:
        WORLD.send_calls += 1
        WORLD.send_keys.append(message.idempotency_key)
        if WORLD.send_errors:
            raise WORLD.send_errors.pop(0)
        if message.idempotency_key not in WORLD.sent:
            WORLD.sent[message.idempotency_key] = message
            kind = "callback_attempt" if message.kind == "callback" else "survey_answer"
            scripted = WORLD.answers.get(message.idempotency_key)
            if scripted is None:
                scripted = WORLD.answers.get(message.incident_key, [])
            for out in scripted:
                if out.kind == kind:
                    token = message.correlation_token if out.correlation_token == "*" else None
                    WORLD.outcomes.append(replace(out, correlation_token=token))
        return SendResult(f"{self.name}:{message.idempotency_key}")

    def lookup(self, idempotency_key: str) -> SendResult | None:
        if idempotency_key in WORLD.sent:
            return SendResult(f"{self.name}:{idempotency_key}")
        return None

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        start = int(cursor or 0)
        mine = [
            o
            for o in WORLD.outcomes
            if (o.kind == "callback_attempt") == ("callback" in self.kinds)
        ]
        if len(mine) > start:
            yield CollectedBatch(mine[start:], str(len(mine)))

    def close(self) -> None:
        pass


OPTIONS = {
    "type": "object",
    "properties": {
        "role": {"enum": ["callback", "survey"]},
        "contact": {"enum": ["phone", "email"]},
    },
}


def register_fixture_types() -> None:
    registry.register("source", "fixture", FixtureSource, {"type": "object"})
    registry.register("channel", "fixture", FixtureChannel, OPTIONS)


def incident(
    key: str,
    priority: str,
    created: datetime,
    history: list[tuple[datetime, Category]],
    *,
    phone: str | None = "13800000000",
    email: str | None = None,
    customer: str = "ACME",
    service: str = "Email",
    sla: dict[str, bool] | None = None,
) -> IncidentRecord:
    hist = [StatusChange(at, cat, str(cat)) for at, cat in history]
    last = hist[-1] if hist else StatusChange(created, Category.NEW, "new")
    return IncidentRecord(
        external_id=key.split("-")[-1],
        key=key,
        title=f"Incident {key} 打印机无法连接",
        priority=priority,
        status=last.status,
        category=last.category,
        created_at=created,
        updated_at=last.at,
        history=hist,
        service=service,
        customer=customer,
        contact=Contact(name="张伟", phone=phone, email=email),
        source_sla=sla or {},
    )


def attempt(
    at: datetime,
    reached: bool,
    confirmed: bool | None = None,
    score: float | None = None,
    *,
    token: bool = True,
    phone: str | None = None,
) -> Outcome:
    return Outcome(
        provider_event_id=f"cb-{at.isoformat()}-{reached}",
        kind="callback_attempt",
        occurred_at=at,
        correlation_token="*" if token else None,
        contact=Contact(phone=phone) if phone else None,
        reached=reached,
        confirmed=confirmed,
        score=score,
        scale=(1, 5),
    )


def answer(at: datetime, score: float, scale: tuple[float, float] = (1, 5)) -> Outcome:
    return Outcome(
        provider_event_id=f"sv-{at.isoformat()}",
        kind="survey_answer",
        occurred_at=at,
        correlation_token="*",
        score=score,
        scale=scale,
    )
