"""Set-based store helpers the loop steps share: chunked IN lists, bulk inserts and updates.

The steps read a batch of rows with a few ``IN`` queries and write it with
one multi-row statement per table, instead of one query and one flush per
item. These helpers use Core statements on the mapped tables, so nothing
passes through the ORM's unit of work (the caller's session still owns the
transaction and commits it).

On SQLite the writes skip SQLAlchemy's per-row parameter handling (about
half the cost of a bulk write): the statement text is built once per table
and column list, each value goes through its column type's own bind
processor (the same conversion SQLAlchemy applies), and the rows go to the
driver's ``executemany`` as tuples. Rows that would need a column's Python
default, or whose keys differ, take the plain SQLAlchemy path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.engine import Dialect
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


SQLITE_VARIABLES = 32766
"""Bound parameters per SQLite statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32)."""

Processor = Callable[[Any], Any] | None


def _processors(table: Table, names: Sequence[str], dialect: Dialect) -> list[Processor]:
    """Each column's bind processor on ``dialect``: what SQLAlchemy converts a value with."""
    return [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]


def _values(row: dict[str, Any], names: Sequence[str], procs: Sequence[Processor]) -> list[Any]:
    return [p(row[n]) if p is not None else row[n] for n, p in zip(names, procs, strict=True)]


def _fast_connection(session: Session) -> Connection | None:
    """The session's connection when the driver path applies (SQLite), else None."""
    conn = session.connection()
    return conn if conn.dialect.name == "sqlite" else None


def _plain_columns(table: Table, rows: Sequence[dict[str, Any]]) -> list[str] | None:
    """The column names every row sets, when they are the same for all rows and cover
    every column with a Python-side default (else None: SQLAlchemy must fill them in)."""
    names = list(rows[0])
    keys = set(names)
    if any(n not in table.c for n in names):
        return None  # SQLAlchemy names the unknown column
    if any(len(r) != len(names) or r.keys() != keys for r in rows):
        return None
    if any(c.default is not None and c.name not in keys for c in table.columns):
        return None
    return names


def _insert_sql(conn: Connection, table: Table, names: Sequence[str], rows: int) -> str:
    prep = conn.dialect.identifier_preparer
    cols = ", ".join(prep.quote(n) for n in names)
    marks = "(" + ", ".join("?" * len(names)) + ")"
    values = marks if rows == 1 else ", ".join([marks] * rows)
    return f"INSERT INTO {prep.format_table(table)} ({cols}) VALUES {values}"


def insert_rows(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column values) into ``model``'s table in one executemany."""
    if not rows:
        return
    table = table_of(model)
    conn = _fast_connection(session)
    names = _plain_columns(table, rows) if conn is not None else None
    if conn is None or names is None:
        session.execute(insert(table), list(rows))
        return
    procs = _processors(table, names, conn.dialect)
    conn.exec_driver_sql(
        _insert_sql(conn, table, names, 1), [tuple(_values(r, names, procs)) for r in rows]
    )


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
    conn = _fast_connection(session)
    names = _plain_columns(table, rows) if conn is not None else None
    if conn is None or names is None:
        stmt = insert(table).returning(table.c.id, table.c[key])
        return {k: i for i, k in session.execute(stmt, list(rows))}
    procs = _processors(table, names, conn.dialect)
    prep = conn.dialect.identifier_preparer
    returning = f" RETURNING {prep.quote('id')}, {prep.quote(key)}"
    ids: dict[Any, int] = {}
    for page in chunks(rows, max(1, SQLITE_VARIABLES // len(names))):
        params = [v for r in page for v in _values(r, names, procs)]
        sql = _insert_sql(conn, table, names, len(page)) + returning
        ids.update({k: i for i, k in conn.exec_driver_sql(sql, tuple(params))})
    return ids


def update_by_id(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Update rows by primary key; each dict holds ``id`` and the new values of some columns.

    Rows that set the same columns share one executemany statement.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(k for k in row if k != "id"), []).append(row)
    table = table_of(model)
    conn = _fast_connection(session)
    for names, group in groups.items():
        if not names:
            continue
        if conn is not None:
            prep = conn.dialect.identifier_preparer
            sets = ", ".join(f"{prep.quote(n)} = ?" for n in names)
            sql = f"UPDATE {prep.format_table(table)} SET {sets} WHERE {prep.quote('id')} = ?"
            procs = _processors(table, names, conn.dialect)
            conn.exec_driver_sql(sql, [(*_values(r, names, procs), r["id"]) for r in group])
            continue
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({name: bindparam(f"_v_{name}") for name in names})
        )
        params = [{"_id": r["id"], **{f"_v_{name}": r[name] for name in names}} for r in group]
        session.execute(stmt, params)


def upsert_rows(
    session: Session, model: type[Any], rows: Sequence[dict[str, Any]], key: str
) -> None:
    """Insert ``rows``; a row whose ``key`` (a unique column) is already stored gets the
    other values instead (``INSERT … ON CONFLICT (key) DO UPDATE``, SQLite and PostgreSQL).

    Every row sets the same columns (the first row's).
    """
    if not rows:
        return
    table = table_of(model)
    names = list(rows[0])
    others = [n for n in names if n != key]
    conn = _fast_connection(session)
    if conn is not None:
        prep = conn.dialect.identifier_preparer
        sets = ", ".join(f"{prep.quote(n)} = excluded.{prep.quote(n)}" for n in others)
        sql = _insert_sql(conn, table, names, 1) + f" ON CONFLICT ({prep.quote(key)}) DO "
        sql += f"UPDATE SET {sets}" if others else "NOTHING"
        procs = _processors(table, names, conn.dialect)
        conn.exec_driver_sql(sql, [tuple(_values(r, names, procs)) for r in rows])
        return
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    stmt = pg_insert(table)
    stmt = (
        stmt.on_conflict_do_update(index_elements=[key], set_={n: stmt.excluded[n] for n in others})
        if others
        else stmt.on_conflict_do_nothing(index_elements=[key])
    )
    session.execute(stmt, list(rows))


DENSE = 2
"""``ids_condition`` reads a range when it spans fewer than DENSE rows per id asked for."""


def ids_condition(column: Any, ids: Sequence[int]) -> tuple[Any, set[int] | None]:
    """A condition on ``column`` selecting the rows of ``ids`` (at most one ``IN`` chunk).

    When the ids are dense (a batch of a month's incidents mostly is): their
    range ``BETWEEN min AND max`` and the set of ids to keep from its rows.
    The statement is then the same for every batch: SQLAlchemy's compiled
    cache serves it and no list of bound parameters is rendered (``IN`` lists
    of varying length are rendered per execution). Otherwise ``IN (…)`` and
    None (every row is one of them).
    """
    span = dense_span(ids)
    if span is not None:
        return column.between(*span), set(ids)
    return column.in_(ids), None


def dense_span(ids: Sequence[int]) -> tuple[int, int] | None:
    """``(min, max)`` of ``ids`` when reading that range is worth it (see :func:`ids_condition`)."""
    if not ids:
        return None
    lo, hi = min(ids), max(ids)
    return (lo, hi) if hi - lo < DENSE * len(ids) else None


class BoundRows:
    """Rows of one table and column list, bound for the driver as they are added.

    On SQLite each row becomes a tuple at once: the values are taken in
    column order in one ``itemgetter`` call and only the columns whose type
    has a bind processor go through it (the same conversion
    :func:`insert_rows` applies). ``constants`` names columns that hold the
    same object in most rows (such as the instant a step runs as of): that
    object is bound once. :meth:`insert` writes the rows with one
    ``executemany``. Elsewhere, or when a column with a Python-side default
    is left out, the rows are kept as dicts and :meth:`insert` hands them to
    :func:`insert_rows`.
    """

    def __init__(
        self,
        session: Session,
        model: type[Any],
        names: Sequence[str],
        constants: Mapping[str, Any] | None = None,
    ) -> None:
        self.session, self.model, self.names = session, model, tuple(names)
        table = table_of(model)
        conn = _fast_connection(session)
        defaults = any(c.default is not None and c.name not in self.names for c in table.columns)
        self._conn = None if conn is None or defaults else conn
        self._dicts: list[dict[str, Any]] = []
        self._tuples: list[tuple[Any, ...]] = []
        get = itemgetter(*self.names)
        self._get: Callable[[dict[str, Any]], Any] = (
            get if len(self.names) > 1 else (lambda row: (get(row),))
        )
        self._procs: list[tuple[int, Callable[[Any], Any], tuple[Any, Any] | None]] = []
        if self._conn is not None:
            procs = _processors(table, self.names, self._conn.dialect)
            for i, (name, p) in enumerate(zip(self.names, procs, strict=True)):
                if p is None:
                    continue
                known = (constants or {}).get(name)
                self._procs.append((i, p, (known, p(known)) if known is not None else None))

    def add(self, row: dict[str, Any]) -> None:
        """Add a row: a dict holding (at least) every column of ``names``."""
        if self._conn is None:
            self._dicts.append({n: row[n] for n in self.names})
            return
        values = list(self._get(row))
        for i, p, known in self._procs:
            value = values[i]
            values[i] = known[1] if known is not None and value is known[0] else p(value)
        self._tuples.append(tuple(values))

    def __len__(self) -> int:
        return len(self._tuples) + len(self._dicts)

    def insert(self) -> None:
        """Insert the rows added so far (and forget them)."""
        if self._conn is not None and self._tuples:
            sql = _insert_sql(self._conn, table_of(self.model), self.names, 1)
            self._conn.exec_driver_sql(sql, self._tuples)
        insert_rows(self.session, self.model, self._dicts)
        self._tuples, self._dicts = [], []
