"""A query's rows as the DB-API driver returns them: no per-row result processing.

A big month's export reads a million rows; SQLAlchemy's result rows and
type processors cost about as much as the driver's own fetching. The export
query reads every column as the driver gives it (instants and JSON as text
on SQLite, booleans as 0/1) and converts a column at a time itself
(:func:`core.export.rows.export_tuples`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session


def driver_batches(session: Session, query: Select[Any], batch: int) -> Iterator[Sequence[Any]]:
    """Batches of ``query``'s rows (tuples), fetched ``batch`` at a time by the driver.

    The statement is compiled for the session's dialect and run on the DB-API
    cursor of the session's connection (in its transaction): on PostgreSQL a
    server-side cursor, so a month of any size is read a batch at a time, as
    on SQLite. The cursor is closed even when the reader stops half-way.
    Only for statements whose parameters are text or int (no bind processing).

    Raises:
        ValueError: A parameter is neither text nor int.
    """
    conn = session.connection()
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    if any(type(value) not in (str, int) for value in params.values()):
        msg = f"driver_batches takes text and int parameters only: {sorted(params)}"
        raise ValueError(msg)
    args: Any = (
        [params[name] for name in compiled.positiontup or ()] if compiled.positional else params
    )
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:
        msg = "the session's connection is closed"
        raise RuntimeError(msg)
    if conn.dialect.name == "postgresql":
        cursor = dbapi.cursor(name=f"qloop_export_{secrets.token_hex(6)}")
    else:
        cursor = dbapi.cursor()
    try:
        cursor.execute(str(compiled), args)
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        cursor.close()
