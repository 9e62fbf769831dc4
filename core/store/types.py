"""Column types that keep instants aware UTC on every backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_fromisoformat = datetime.fromisoformat


def _naive_error(value: datetime) -> ValueError:
    return ValueError(f"naive datetime {value!r} cannot be stored")


def _sqlite_bind(value: datetime | None) -> str | None:
    """An aware instant as SQLite stores it: ``YYYY-MM-DD HH:MM:SS.ffffff``, UTC, no zone.

    The text is the one SQLAlchemy's SQLite ``DATETIME`` writes (always six
    digits of microseconds), so stored values keep comparing as strings.
    """
    if value is None:
        return None
    tz = value.tzinfo
    if tz is None:
        raise _naive_error(value)
    if tz is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_result(value: str | None) -> datetime | None:
    """A stored SQLite instant (UTC, no zone) read back aware UTC."""
    if value is None:
        return None
    try:
        return _fromisoformat(value + "+00:00")
    except ValueError:  # a value written with its zone by something else
        parsed = _fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware instants as UTC; reads them back aware UTC (SQLite keeps no zone).

    On SQLite the value is converted to and from its stored text in one step
    (no naive intermediate, no second processor); values already in UTC skip
    the zone conversion on every backend.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise _naive_error(value)
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_bind
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_result
        return super().result_processor(dialect, coltype)
