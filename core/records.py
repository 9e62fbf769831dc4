"""Canonical records exchanged between connectors and the core.

These are plain frozen dataclasses, not ORM rows: a source turns its JSON
into :class:`IncidentRecord`, a channel turns its answers into
:class:`Outcome`, and the core never sees a provider's raw shapes except
in ``raw`` (kept for audit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from core.errors import InputError


class Category(StrEnum):
    """Canonical status categories (SPEC §10)."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


PRIORITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class StatusChange:
    """The incident entered ``category`` (source status ``status``) at ``at`` (aware UTC)."""

    at: datetime
    category: Category
    status: str = ""


@dataclass(frozen=True)
class Contact:
    """How to reach the customer who reported the incident."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None

    def is_empty(self) -> bool:
        return not (self.phone or self.email)


@dataclass(frozen=True)
class IncidentRecord:
    """One incident as a source reports it, mapped to qloop's fields.

    ``history`` is the full status history known to the source, oldest
    first; ``source_sla`` keeps the source's own SLA verdicts (for example
    ``{"response_met": True, "resolution_met": False}``) beside qloop's.
    """

    external_id: str
    key: str
    title: str
    priority: str
    status: str
    category: Category
    created_at: datetime
    updated_at: datetime
    history: Sequence[StatusChange] = ()
    service: str | None = None
    customer: str | None = None
    contact: Contact = field(default_factory=Contact)
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    source_sla: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A source record that could not be mapped: which one, why, and its update time.

    ``key`` is the record's key or id as the source shows it; ``field`` the
    mapped field at fault when known.
    """

    key: str
    error: str
    field: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, key: str, exc: Exception, updated_at: datetime | None = None) -> Rejected:
        """From the :class:`~core.errors.InputError` raised while mapping record ``key``."""
        found = exc.field if isinstance(exc, InputError) else None
        return cls(key, str(exc), found, updated_at)


@dataclass(frozen=True)
class PulledBatch:
    """A batch of records from a source and the cursor to resume after it.

    The core commits the records, the rejected ones and the cursor together,
    so a crash between batches re-reads at most one batch. A record that
    cannot be mapped goes in ``rejected`` and the source goes on past it.
    """

    records: Sequence[IncidentRecord]
    cursor: str | None
    rejected: Sequence[Rejected] = ()
    skipped_own: int = 0
    """Records the source left out because qloop created them (its nonconformity tickets)."""


MessageKind = Literal["callback", "survey"]


@dataclass(frozen=True)
class OutboundMessage:
    """A callback task or survey invitation qloop pushes to a channel."""

    kind: MessageKind
    idempotency_key: str
    correlation_token: str
    source: str
    incident_external_id: str
    incident_key: str
    title: str
    priority: str
    contact: Contact
    resolved_at: datetime
    due_at: datetime | None = None
    service: str | None = None
    customer: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What the provider returned for an accepted message."""

    provider_ref: str


OutcomeKind = Literal["callback_attempt", "survey_answer"]


@dataclass(frozen=True)
class Outcome:
    """One answer from a channel: a callback attempt or a survey answer.

    ``provider_event_id`` identifies the answer at the provider: receiving
    it twice changes nothing. ``score`` is on the channel's ``scale``
    (min, max); the core normalises it to 1–5.
    """

    provider_event_id: str
    kind: OutcomeKind
    occurred_at: datetime
    correlation_token: str | None = None
    provider_ref: str | None = None
    contact: Contact | None = None
    reached: bool | None = None
    confirmed: bool | None = None
    score: float | None = None
    scale: tuple[float, float] = (1.0, 5.0)
    comment: str | None = None
    agent: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectedBatch:
    """Outcomes collected from a channel and the cursor to resume after them.

    A provider record that cannot be mapped (an attempt without a time…)
    goes in ``rejected`` and the channel goes on past it; the core keeps it
    with the source name ``channel:<name>``.
    """

    outcomes: Sequence[Outcome]
    cursor: str | None
    rejected: Sequence[Rejected] = ()


@dataclass(frozen=True)
class TicketRequest:
    """A nonconformity ticket to create in an ITSM tool.

    ``dedup_key`` is stored on the ticket (property, label or field) and
    searched before creating, so a retried create never makes a second one.
    """

    dedup_key: str
    title: str
    description: str
    incident_external_id: str
    incident_key: str
    rule: str
    severity: str
    raised_at: datetime
    deadline: datetime
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class TicketComment:
    """A comment qloop writes on one of its tickets (a change of the finding, a withdrawal).

    ``key`` identifies the comment: the connector stamps it in the text
    (:meth:`stamped`) and looks for it before writing, so a retried call
    never comments twice.
    """

    key: str
    text: str

    def stamped(self) -> str:
        """The text with the key on its last line, as it is written to the ITSM."""
        return f"{self.text.rstrip()}\n\n{self.marker}"

    @property
    def marker(self) -> str:
        return f"[{self.key}]"


@dataclass(frozen=True)
class TicketNote:
    """A comment found on a ticket (read back for a complaint's root cause and rectification)."""

    text: str
    at: datetime | None = None
    """When the tool says it was written (None: it does not say)."""


@dataclass(frozen=True)
class TicketRef:
    ref: str
    url: str | None = None


@dataclass(frozen=True)
class TicketStatus:
    ref: str
    status: str
    category: Category
    closed_at: datetime | None = None

    @property
    def is_done(self) -> bool:
        return self.category in (Category.RESOLVED, Category.CLOSED, Category.CANCELLED)
