"""The export's cached local times are exactly ``local_iso``, across zone transitions too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from core.export.local_time import LocalIso
from core.export.nc_sheet import _local_resolution, _resolution
from core.store.types import _sqlite_bind
from core.timeutil import local_iso

ZONES = (
    "Asia/Shanghai",
    "UTC",
    "Europe/Paris",  # DST at 01:00 UTC
    "America/New_York",
    "America/St_Johns",  # -03:30 / -02:30
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "Africa/Casablanca",  # DST suspended each Ramadan
)


def _instants() -> list[datetime]:
    """Every 7 min 13.5 s over three days around each 2026 transition, plus LMT-era instants."""
    step = timedelta(minutes=7, seconds=13, microseconds=500_000)
    days = ("2026-03-07", "2026-03-27", "2026-04-03", "2026-09-26", "2026-10-23", "2026-11-01")
    out = []
    for day in days:
        t = datetime.fromisoformat(day).replace(tzinfo=UTC)
        end = t + timedelta(days=3)
        while t < end:
            out.append(t)
            out.append(t.replace(microsecond=0))
            t += step
    out += [datetime(1890, 1, 1, 12, 0, 5, tzinfo=UTC), datetime(1901, 12, 31, 23, 59, tzinfo=UTC)]
    return out


@pytest.mark.parametrize("zone", ZONES)
def test_stored_text_gives_the_text_of_local_iso(zone: str) -> None:
    tz = ZoneInfo(zone)
    fmt = LocalIso(tz)
    for at in _instants():
        stored = _sqlite_bind(at)
        assert stored is not None
        assert fmt(stored) == local_iso(at, tz), (zone, stored)
        assert fmt(at) == local_iso(at, tz)  # an aware datetime (PostgreSQL) too


def test_every_second_across_a_transition() -> None:
    tz = ZoneInfo("Europe/Paris")
    fmt = LocalIso(tz)
    at = datetime(2026, 10, 25, 0, 58, tzinfo=UTC)  # 03:00 CEST becomes 02:00 CET at 01:00 UTC
    for _ in range(4 * 60):
        assert fmt(_sqlite_bind(at)) == local_iso(at, tz)
        at += timedelta(seconds=1)


def test_other_values() -> None:
    fmt = LocalIso(ZoneInfo("Asia/Shanghai"))
    assert fmt(None) is None
    assert fmt("2026-10-01T00:00:00+00:00") == "2026-10-01T08:00:00+08:00"  # written with a zone
    assert fmt("2026-10-01 00:00:00") == "2026-10-01T08:00:00+08:00"  # no microseconds
    assert fmt("2026-10-01 00:00:00.000000") == "2026-10-01T08:00:00+08:00"
    assert fmt("2026-10-01 00:00:00.250000") == "2026-10-01T08:00:00.250000+08:00"


class _HalfHourShift(tzinfo):
    """+01:00, then +02:00 from 2026-01-01 00:30 UTC: a transition inside a UTC hour."""

    AT = datetime(2026, 1, 1, 0, 30)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        gap_start = self.AT + timedelta(hours=1)  # local 01:30 is the first instant skipped
        return timedelta(hours=1 if dt is None or dt.replace(tzinfo=None) < gap_start else 2)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def fromutc(self, dt: datetime) -> datetime:
        hours = 1 if dt.replace(tzinfo=None) < self.AT else 2
        return dt + timedelta(hours=hours)


def test_an_hour_that_a_transition_crosses_is_exact() -> None:
    tz = _HalfHourShift()
    fmt = LocalIso(tz)
    at = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    seen = set()
    for _ in range(3 * 60):
        text = fmt(_sqlite_bind(at))
        assert text == local_iso(at, tz), at
        seen.add(text[-6:] if text else None)
        at += timedelta(minutes=1)
    assert seen == {"+01:00", "+02:00"}


@pytest.mark.parametrize(
    "key",
    [
        "response",
        "2026-10-25T00:59:59+00:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-01T01:44:27.500000+00:00",
        "2026-10-01T01:44:27Z",
        "2026-10-25T01:30:00+01:00",
        "resolution",
    ],
)
def test_nonconformity_resolution_keys_as_before(key: str) -> None:
    tz = ZoneInfo("Europe/Paris")
    assert _local_resolution(key, LocalIso(tz)) == _resolution(key, tz)


@pytest.mark.parametrize("zone", ZONES)
def test_column_gives_what_each_call_gives(zone: str) -> None:
    """A column mixing stored texts, None, aware datetimes and other ISO texts."""
    tz = ZoneInfo(zone)
    values: list[str | datetime | None] = []
    for i, at in enumerate(_instants()):
        values.append(_sqlite_bind(at))
        if i % 5 == 0:
            values += [None, at, at.isoformat(), str(at.replace(tzinfo=None))[:19]]
    expected = [LocalIso(tz)(v) for v in values]
    assert LocalIso(tz).column(values) == expected
    assert expected.count(None) == values.count(None)


@pytest.mark.parametrize("zone", ZONES)
def test_a_column_of_one_value_is_formatted_once(zone: str) -> None:
    tz = ZoneInfo(zone)
    calls: list[object] = []

    class Counted(LocalIso):
        def __call__(self, v: str | datetime | None) -> str | None:
            calls.append(v)
            return super().__call__(v)

    stored = _sqlite_bind(datetime(2026, 10, 25, 0, 30, 0, 250000, tzinfo=UTC))
    for value in (stored, "2026-10-25T01:30:00+01:00", stored[:19]):
        calls.clear()
        assert Counted(tz).column((value,) * 5) == [LocalIso(tz)(value)] * 5
        assert calls == [value]
    mixed: list[str | datetime | None] = [stored, None, stored]  # equal ends, not one value
    assert LocalIso(tz).column(mixed) == [LocalIso(tz)(v) for v in mixed]
