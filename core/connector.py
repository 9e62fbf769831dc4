"""The two small interfaces every connector implements.

A *source* is an ITSM tool: it reports incidents changed since a cursor and
takes nonconformity tickets. A *channel* is a phone or survey service: it
takes callback tasks and survey invitations and reports outcomes.

To add a connector, implement one of these protocols in its own module
under ``connectors/`` and register a factory with :mod:`core.registry`.
Connectors raise :class:`core.errors.RetriableError` for failures worth
retrying and :class:`core.errors.FatalError` for the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from core.records import (
    CollectedBatch,
    Contact,
    MessageKind,
    OutboundMessage,
    Outcome,
    PulledBatch,
    SendResult,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)
from core.timeutil import utcnow


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector factory gets besides its own options.

    ``mapping`` is the connector type's default mapping from ``mappings/``
    merged with the deployment's overrides; ``state_dir`` is where a
    connector may keep local files; ``clock`` returns aware UTC now;
    ``sleep`` is how the connector waits (retries, rate budgets), so tests
    can run on a fake clock; ``redis_url`` is the deployment's Redis (None
    in embedded mode), through which HTTP connectors share each host's
    request budget with every process.
    """

    state_dir: Path
    mapping: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    redis_url: str | None = None


@runtime_checkable
class Source(Protocol):
    """An ITSM tool qloop pulls incidents from and pushes tickets into."""

    name: str

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Yield batches of incidents changed since ``cursor`` (None: from the start).

        Each batch carries the cursor to resume after it. Overlap windows and
        de-duplication of the boundary are the source's job; the core's upsert
        is idempotent, so a record seen twice is harmless.
        """
        ...

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        """Create a nonconformity ticket, or return the one already holding its dedup key."""
        ...

    def ticket_status(self, ref: str) -> TicketStatus:
        """Read the current status of a ticket qloop created."""
        ...

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        """Add ``comment`` to ticket ``ref``; returns the comment's id at the tool.

        Idempotent: a comment already carrying ``comment.marker`` is returned
        instead of writing a second one.
        """
        ...

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        """Comment ticket ``ref`` (as :meth:`comment_ticket`) and resolve or close it.

        A ticket already in a done status is left as it is. Returns the
        status it ends in.
        """
        ...

    def close(self) -> None:
        """Release sessions and connections."""
        ...


@runtime_checkable
class Channel(Protocol):
    """A phone or survey service qloop pushes tasks to and collects answers from."""

    name: str
    kinds: frozenset[MessageKind]

    def can_reach(self, contact: Contact) -> bool:
        """Whether this channel can deliver to ``contact`` (usable phone, e-mail…)."""
        ...

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one message; the same ``idempotency_key`` twice must not deliver twice."""
        ...

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """Ask the provider whether it already holds this message (None: it does not).

        Raise :class:`NotImplementedError` when the provider cannot be asked.
        """
        ...

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Yield outcomes reported since ``cursor``, each batch with its resume cursor."""
        ...

    def close(self) -> None:
        """Release sessions and connections."""
        ...


@runtime_checkable
class SendMany(Protocol):
    """A channel that takes a batch of messages in one call (optional, for throughput).

    The loop falls back to :meth:`Channel.send` per message for any message
    whose answer is an exception, so a batch must hold the same promises as
    one ``send`` per message: each ``idempotency_key`` delivered at most once.
    """

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult | Exception]:
        """Deliver ``messages``; one answer per message, in order (an exception when it failed)."""
        ...


@runtime_checkable
class TicketStatusBatches(Protocol):
    """A source that reads the status of a batch of tickets in one call (optional, for
    throughput; the track step falls back to :meth:`Source.ticket_status` per ticket).

    Each answer is the status or the exception the single read would have
    raised; a ticket whose answer is a :class:`~core.errors.RetriableError`,
    or every ticket of a call that raised, is read again on its own.
    """

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """Read each ticket's status; one answer per ref, in order."""
        ...


@runtime_checkable
class TicketBatches(TicketStatusBatches, Protocol):
    """A source that creates and reads tickets a batch per call (optional, for throughput).

    As with :class:`SendMany`, each answer is a result or the exception the
    single call would have raised; a batch keeps the dedup-key promise.
    """

    def create_tickets(self, tickets: Sequence[TicketRequest]) -> list[TicketRef | Exception]:
        """Create (or find by dedup key) each ticket; one answer per ticket, in order."""
        ...


@runtime_checkable
class CampaignSurveys(Protocol):
    """A survey channel that can run company-level campaigns (issue 12 item 1).

    Campaign invitations are ``survey`` messages sent on the campaign's own
    questionnaire; :meth:`respondents` tells which of them answered.
    """

    def for_survey(self, survey_id: int) -> Channel:
        """The same service on questionnaire ``survey_id`` (same session and limits)."""
        ...

    def respondents(self) -> dict[str, datetime | None]:
        """Correlation tokens of the participants who completed, with when (None: withheld)."""
        ...

    def remind(self, provider_ref: str, round_no: int, min_days: int) -> str:
        """Remind the invited participant ``provider_ref`` who has not answered, once per round.

        ``round_no`` is the reminder's number (1 for the first): the service
        must not remind anyone already reminded ``round_no`` times, so the
        same call repeated (a lost reply, a crash) mails nobody twice; nor
        anyone mailed less than ``min_days`` days ago. Returns ``reminded``,
        ``already`` (reminded this round before) or ``answered`` (nothing to
        remind). Raises FatalError when the participant cannot be reminded.
        """
        ...

    def campaign_responses(self) -> list[CampaignResponse]:
        """Every complete response of the questionnaire with its participant's correlation token."""
        ...


@dataclass(frozen=True)
class CampaignResponse:
    """One complete response to a campaign's questionnaire (question code → answer code)."""

    correlation_token: str
    response_id: str
    submitted_at: datetime | None
    values: Mapping[str, str]


@runtime_checkable
class TicketNotes(Protocol):
    """A source that can read the comments of its tickets (complaints' root cause, issue 12)."""

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """The comments of ticket ``ref``, oldest first."""
        ...


@runtime_checkable
class TicketNotesBatches(Protocol):
    """A source that reads the comments of a batch of tickets in one call (optional, for
    throughput; the loop falls back to :meth:`TicketNotes.ticket_notes` per ticket).

    As with :class:`TicketBatches`, each answer is the notes or the exception the
    single call would have raised; a ticket whose answer is a
    :class:`~core.errors.RetriableError` is read again on its own.
    """

    def ticket_notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """The comments of each ticket ``refs`` (oldest first); one answer per ref, in order."""
        ...


@runtime_checkable
class TicketFields(Protocol):
    """A source that can read fields of its tickets (a root cause kept in a field)."""

    def ticket_fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """The values of fields ``names`` of ticket ``ref`` (rich text as plain text)."""
        ...


@runtime_checkable
class ScopeCount(Protocol):
    """A source that can say how many records its first sync should read (SPEC §11)."""

    def count_in_scope(self) -> int | None:
        """The tool's own count of the records a first sync reads (None: it cannot tell).

        The same scope as a pull without a cursor: the configured filter and
        ``backfill_from``, every status, trashed records included, qloop's
        own tickets left out where the query can say so.
        """
        ...


@runtime_checkable
class Probe(Protocol):
    """A connector that can check its credentials and permissions (``qloop sources test``)."""

    def probe(self) -> list[str]:
        """Lines describing what the connector can see (account, projects, counts).

        Raise :class:`core.errors.FatalError` (or RetriableError) with a clear
        message naming what is wrong: URL, credentials, permission, TLS.
        """
        ...


@runtime_checkable
class WebhookReceiver(Protocol):
    """A channel that also receives outcomes pushed to qloop's own endpoint."""

    def receive(self, headers: Mapping[str, str], body: bytes, url: str) -> Sequence[Outcome]:
        """Verify one delivery and turn it into outcomes.

        ``headers`` are matched case-insensitively; ``url`` is the full URL the
        provider posted to (some signatures cover it). Raise
        :class:`core.errors.InputError` for a forged, stale or malformed
        delivery (nothing is stored then). Must not store anything itself:
        the caller stores the outcomes and commits before answering 2xx.
        """
        ...
