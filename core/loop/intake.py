"""intake: outcomes pushed to qloop (webhooks) stored with one statement per batch.

Each delivery's outcomes become ``response`` rows inserted with ``INSERT …
ON CONFLICT (channel, provider_event_id) DO NOTHING RETURNING``: an event
stored before (or twice in the same batch, or by a concurrent transaction)
is skipped by the database itself, with no SELECT first and no retry on a
unique violation. The caller gives the connection and commits; several
deliveries may share one transaction (:class:`api.intake.IntakeWriter`),
each told how many of its outcomes were new.

On PostgreSQL the rows skip SQLAlchemy's per-execution work: the one-row
statement SQLAlchemy compiles (the same SQL, casts included) is kept per
dialect, each value goes through its column type's own bind processor (the
conversion SQLAlchemy applies), and the driver runs it once per row in one
pipeline (``executemany`` with ``RETURNING``). The statement text is the
same whatever the batch size, so the driver parses and prepares it once,
where a multi-row ``VALUES`` differs with every batch size.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

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


@cache
def _statement_for(dialect_name: str) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` into ``response`` (built once)."""
    insert = _INSERTS.get(dialect_name)
    if insert is None:
        msg = f"database_url: webhook intake needs SQLite or PostgreSQL, not {dialect_name}"
        raise ConfigError(msg)
    table = Response.__table__
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["channel", "provider_event_id"])
        .returning(table.c.channel, table.c.provider_event_id)
    )


def _statement(dialect: Dialect) -> Any:
    return _statement_for(dialect.name)


@dataclass(frozen=True)
class _DriverInsert:
    """The one-row insert as SQLAlchemy compiles it for a dialect, run by the driver."""

    sql: str
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    """(column, bind processor) of the columns whose values SQLAlchemy converts."""


_DRIVER_INSERTS: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _DriverInsert]] = (
    weakref.WeakKeyDictionary()
)


def _driver_insert(dialect: Dialect, names: tuple[str, ...]) -> _DriverInsert:
    """The driver-level insert of the columns ``names`` on ``dialect`` (made once)."""
    known = _DRIVER_INSERTS.setdefault(dialect, {})
    found = known.get(names)
    if found is None:
        table = Response.__table__
        compiled = _statement(dialect).compile(dialect=dialect, column_keys=list(names))
        procs = ((n, table.c[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names)
        found = known[names] = _DriverInsert(
            sql=str(compiled),
            processors=tuple((n, p) for n, p in procs if p is not None),
        )
    return found


def _insert_by_driver(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[bool]:
    """PostgreSQL: insert ``rows`` (all with the same keys); whether each was new."""
    plan = _driver_insert(conn.dialect, tuple(rows[0]))
    params: list[dict[str, Any]] = []
    for row in rows:
        values = dict(row)
        for name, proc in plan.processors:
            values[name] = proc(values[name])
        params.append(values)
    driver: Any = conn.connection.driver_connection
    cursor = driver.cursor()  # in the caller's transaction
    try:
        if len(params) == 1:  # no pipeline for one row: one round trip fewer
            cursor.execute(plan.sql, params[0])
            return [cursor.fetchone() is not None]
        cursor.executemany(plan.sql, params, returning=True)
        new: list[bool] = []
        while True:  # one result per row, in order: the row back when it was inserted
            new.append(cursor.fetchone() is not None)
            if not cursor.nextset():
                return new
    finally:
        cursor.close()


def store_deliveries(
    conn: Connection, deliveries: Sequence[Delivery], now: datetime
) -> list[Stored]:
    """Insert the outcomes of ``deliveries`` not stored yet (the caller commits).

    Returns one :class:`Stored` per delivery, in order. An event that two
    deliveries of the batch carry counts as created for the first only.
    """
    stmt = _statement(conn.dialect)  # ConfigError on a dialect without ON CONFLICT
    rows: list[dict[str, Any]] = []
    owners: list[tuple[int, str, str]] = []
    for n, delivery in enumerate(deliveries):
        for out in delivery.outcomes:
            rows.append(response_row(delivery.channel, out, now))
            owners.append((n, delivery.channel, out.provider_event_id))
    created = [0] * len(deliveries)
    duplicates = [0] * len(deliveries)
    if rows and conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        # the rows go in order, so a second copy in the batch is the one not inserted
        for (n, _, _), new in zip(owners, _insert_by_driver(conn, rows), strict=True):
            if new:
                created[n] += 1
            else:
                duplicates[n] += 1
        return [Stored(c, d) for c, d in zip(created, duplicates, strict=True)]
    inserted: set[tuple[str, str]] = set()
    if rows:  # one compiled statement, sent as multi-row VALUES pages ("insertmanyvalues")
        inserted.update((c, e) for c, e in conn.execute(stmt, rows))
    for n, channel, event in owners:
        if (channel, event) in inserted:
            inserted.discard((channel, event))  # a second copy in the batch is a duplicate
            created[n] += 1
        else:
            duplicates[n] += 1
    return [Stored(c, d) for c, d in zip(created, duplicates, strict=True)]
