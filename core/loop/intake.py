"""intake: outcomes pushed to qloop (webhooks) stored with one statement per batch.

Each delivery's outcomes become ``response`` rows inserted with ``INSERT …
ON CONFLICT (channel, provider_event_id) DO NOTHING RETURNING``: an event
stored before (or twice in the same batch, or by a concurrent transaction)
is skipped by the database itself, with no SELECT first and no retry on a
unique violation. The caller gives the connection and commits; several
deliveries may share one transaction (:class:`api.intake.IntakeWriter`),
each told how many of its outcomes were new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import ConfigError
from core.loop.collect import response_row
from core.records import Outcome
from core.store.models import Response

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True)
class Delivery:
    """One delivery's outcomes for ``channel``."""

    channel: str
    outcomes: Sequence[Outcome]


@dataclass(frozen=True)
class Stored:
    """What storing a delivery did: outcomes new to the store, and those seen before."""

    created: int
    duplicates: int


def store_deliveries(
    conn: Connection, deliveries: Sequence[Delivery], now: datetime
) -> list[Stored]:
    """Insert the outcomes of ``deliveries`` not stored yet (the caller commits).

    Returns one :class:`Stored` per delivery, in order. An event that two
    deliveries of the batch carry counts as created for the first only.
    """
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        msg = f"database_url: webhook intake needs SQLite or PostgreSQL, not {conn.dialect.name}"
        raise ConfigError(msg)
    table = Response.__table__
    rows: list[dict[str, Any]] = []
    owners: list[tuple[int, str, str]] = []
    for n, delivery in enumerate(deliveries):
        for out in delivery.outcomes:
            rows.append(response_row(delivery.channel, out, now))
            owners.append((n, delivery.channel, out.provider_event_id))
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["channel", "provider_event_id"])
        .returning(table.c.channel, table.c.provider_event_id)
    )
    inserted: set[tuple[str, str]] = set()
    if rows:  # one compiled statement, sent as multi-row VALUES pages ("insertmanyvalues")
        inserted.update((c, e) for c, e in conn.execute(stmt, rows))
    created = [0] * len(deliveries)
    duplicates = [0] * len(deliveries)
    for n, channel, event in owners:
        if (channel, event) in inserted:
            inserted.discard((channel, event))  # a second copy in the batch is a duplicate
            created[n] += 1
        else:
            duplicates[n] += 1
    return [Stored(c, d) for c, d in zip(created, duplicates, strict=True)]
