"""Set-based store helpers the loop steps share: chunked IN lists, bulk inserts and updates.

The steps read a batch of rows with a few ``IN`` queries and write it with
one multi-row statement per table, instead of one query and one flush per
item. These helpers use Core statements on the mapped tables, so nothing
passes through the ORM's unit of work (the caller's session still owns the
transaction and commits it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session

T = TypeVar("T")

IN_CHUNK = 1000
"""Values per ``IN (…)`` list: well below SQLite's and PostgreSQL's bound-parameter limits."""


def chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """Split ``values`` into lists of at most ``size`` items."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def table_of(model: type[Any]) -> Table:
    """The Core table behind a mapped class."""
    table: Table = model.__table__
    return table


def insert_rows(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column values) into ``model``'s table in one executemany."""
    if rows:
        session.execute(insert(table_of(model)), list(rows))


def insert_returning_ids(
    session: Session, model: type[Any], rows: Sequence[dict[str, Any]], key: str
) -> dict[Any, int]:
    """Insert ``rows`` and return each new row's id by the value of its unique column ``key``.

    One multi-row ``INSERT … RETURNING`` per page (SQLite ≥ 3.35, PostgreSQL):
    the ids come back keyed by ``key``, so their order does not matter.
    """
    if not rows:
        return {}
    table = table_of(model)
    stmt = insert(table).returning(table.c.id, table.c[key])
    return {k: i for i, k in session.execute(stmt, list(rows))}


def update_by_id(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Update rows by primary key; each dict holds ``id`` and the new values of some columns.

    Rows that set the same columns share one executemany statement.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(k for k in row if k != "id"), []).append(row)
    table = table_of(model)
    for names, group in groups.items():
        if not names:
            continue
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({name: bindparam(f"_v_{name}") for name in names})
        )
        params = [{"_id": r["id"], **{f"_v_{name}": r[name] for name in names}} for r in group]
        session.execute(stmt, params)
