"""Time helpers: aware UTC instants, whole seconds, durations, months.

Every instant qloop stores or computes with is timezone-aware and truncated
to whole seconds (SPEC §10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from core.errors import InputError

_DURATION = re.compile(r"(\d+)\s*(bd|d|h|m|s)")


def utcnow() -> datetime:
    """The current instant, aware UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def to_utc(value: datetime) -> datetime:
    """Aware UTC, truncated to whole seconds; naive datetimes are refused.

    A value already whole-second UTC is returned as it is (the common case:
    instants read back from the store).
    """
    if value.tzinfo is UTC and not value.microsecond:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"naive datetime {value.isoformat()} has no time zone"
        raise InputError(msg)
    return value.astimezone(UTC).replace(microsecond=0)


def as_utc(value: datetime | None) -> datetime | None:
    """Like :func:`to_utc` but a naive value is taken as UTC (values read back from SQLite)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC, microsecond=0)
    return value.astimezone(UTC).replace(microsecond=0)


def parse_instant(text: str, default_tz: tzinfo | None = None) -> datetime:
    """Parse an ISO 8601 instant; a naive one is read in ``default_tz`` (refused when None)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"not an ISO 8601 instant: {text!r}"
        raise InputError(msg) from exc
    if value.tzinfo is None:
        if default_tz is None:
            msg = f"instant {text!r} has no time zone"
            raise InputError(msg)
        value = value.replace(tzinfo=default_tz)
    return to_utc(value)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    return value.isoformat() if value is not None else None


def local_iso(value: datetime | None, tz: tzinfo) -> str | None:
    """``value`` in zone ``tz`` as ISO 8601 (None stays None): how exports show instants."""
    return value.astimezone(tz).isoformat() if value is not None else None


@dataclass(frozen=True)
class Duration:
    """A duration written in config: elapsed seconds plus business days.

    ``4h`` is 14,400 s; ``1bd`` is one business day, whose length in
    seconds depends on the calendar (its standard working day).
    """

    seconds: int = 0
    business_days: int = 0

    def total_seconds(self, business_day_seconds: int = 86_400) -> int:
        return self.seconds + self.business_days * business_day_seconds

    def __str__(self) -> str:
        parts = []
        if self.business_days:
            parts.append(f"{self.business_days}bd")
        if self.seconds or not parts:
            parts.append(f"{self.seconds}s")
        return "".join(parts)


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str | int, *, allow_business_days: bool = True) -> Duration:
    """Parse ``15m``, ``4h``, ``1h30m``, ``2d``, ``3bd`` (or an int of seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            msg = f"duration must not be negative: {text}"
            raise InputError(msg)
        return Duration(seconds=text)
    raw = str(text).strip().lower()
    pos, seconds, bdays = 0, 0, 0
    for m in _DURATION.finditer(raw):
        if raw[pos : m.start()].strip():
            break
        amount, unit = int(m.group(1)), m.group(2)
        if unit == "bd":
            if not allow_business_days:
                msg = f"business days are not allowed here: {text!r}"
                raise InputError(msg)
            bdays += amount
        else:
            seconds += amount * _UNIT_SECONDS[unit]
        pos = m.end()
    if pos == 0 or raw[pos:].strip():
        msg = f"not a duration: {text!r} (use e.g. 30s, 15m, 4h, 1h30m, 2d, 3bd)"
        raise InputError(msg)
    return Duration(seconds=seconds, business_days=bdays)


def format_seconds(seconds: float) -> str:
    """``604800`` → ``7d``; ``5400`` → ``1h30m``: durations as the config writes them."""
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def parse_month(text: str) -> tuple[int, int]:
    """``2026-10`` → (2026, 10)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        msg = f"not a month (YYYY-MM): {text!r}"
        raise InputError(msg)
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a month in the zone ``tz``."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=tz)
    nxt = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return to_utc(start), to_utc(nxt)


def month_of(instant: datetime, tz: tzinfo) -> str:
    """The month ``YYYY-MM`` that holds ``instant`` in zone ``tz``."""
    local = instant.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def previous_month(month: str) -> str:
    year, mon = parse_month(month)
    d = date(year, mon, 1) - timedelta(days=1)
    return f"{d.year:04d}-{d.month:02d}"
