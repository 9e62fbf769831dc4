"""UTCDateTime: aware instants in, aware UTC out, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, select, text
from sqlalchemy.dialects.sqlite import DATETIME

from core.store.types import UTCDateTime

SHANGHAI = timezone(timedelta(hours=8))


def _table() -> tuple[MetaData, Table]:
    meta = MetaData()
    table = Table("t", meta, Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))
    return meta, table


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 7, 14, 15, 5, tzinfo=UTC),
        datetime(2026, 12, 7, 14, 15, 5, 123456, tzinfo=UTC),
        datetime(2026, 12, 7, 22, 15, 5, 7, tzinfo=SHANGHAI),
        datetime(1, 1, 1, 8, 0, tzinfo=SHANGHAI),  # the earliest year, shifted across a day
    ],
)
def test_round_trip_is_aware_utc(database_url: str, value: datetime) -> None:
    meta, table = _table()
    engine = create_engine(database_url)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "at": value}, {"id": 2, "at": None}])
        got = dict(conn.execute(select(table.c.id, table.c.at)).all())
        hit = conn.scalar(select(table.c.id).where(table.c.at == value))
    engine.dispose()
    assert got[1] == value
    assert got[1].tzinfo is UTC
    assert got[2] is None
    assert hit == 1


def test_naive_instant_is_refused(database_url: str) -> None:
    meta, table = _table()
    engine = create_engine(database_url)
    meta.create_all(engine)
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "at": datetime(2026, 1, 1)}])
    engine.dispose()


def test_sqlite_text_is_what_sqlalchemy_datetime_writes(tmp_path: object) -> None:
    """Stored text keeps its old form, so old rows and string comparisons stay valid."""
    meta, table = _table()
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    values = [
        datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 0, 0, 5, tzinfo=SHANGHAI),
    ]
    legacy = DATETIME().bind_processor(engine.dialect)
    assert legacy is not None
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "at": v} for i, v in enumerate(values)])
        stored = [r[0] for r in conn.execute(text("SELECT at FROM t ORDER BY id"))]
        # a row written in the old form (and one without microseconds) reads back the same
        conn.execute(text("INSERT INTO t VALUES (7, '2026-03-01 00:00:00')"))
        seventh = conn.scalar(select(table.c.at).where(table.c.id == 7))
    engine.dispose()
    assert stored == [legacy(v.astimezone(UTC).replace(tzinfo=None)) for v in values]
    assert seventh == values[0]
