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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from core.records import (
    CollectedBatch,
    Contact,
    MessageKind,
    OutboundMessage,
    PulledBatch,
    SendResult,
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
    connector may keep local files; ``clock`` returns aware UTC now.
    """

    state_dir: Path
    mapping: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow


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
