"""BusinessCalendar: hand-computed cases and properties (Shanghai and DST zones)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar import BusinessCalendar
from core.errors import ConfigError, InputError

H = 3600
SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")

# 09:00-12:00 and 13:00-18:00, Monday to Friday: an 8 h working day.
OFFICE = {d: [(9 * H, 12 * H), (13 * H, 18 * H)] for d in range(5)}
# New York: office hours, a Saturday span inside the night, and Sunday spans
# that straddle the 02:00 DST transitions (they overlap once converted).
NY_HOURS = {
    **{d: [(8 * H, 17 * H)] for d in range(5)},
    5: [(H + 1800, 2 * H + 1800)],
    6: [(0, 2 * H + 1800), (3 * H, 4 * H)],
}
# Paris: whole days on Sunday (23 h and 25 h on the transition Sundays).
PARIS_HOURS = {**{d: [(9 * H, 12 * H), (14 * H, 18 * H)] for d in range(5)}, 6: [(0, 86_400)]}


def shanghai(**kw: object) -> BusinessCalendar:
    return BusinessCalendar("cn-office", "Asia/Shanghai", OFFICE, country="CN", **kw)  # type: ignore[arg-type]


CN = shanghai()
NYC = BusinessCalendar("ny", "America/New_York", NY_HOURS, country="US", subdiv="NY")
PAR = BusinessCalendar("paris", "Europe/Paris", PARIS_HOURS, country="FR")


def at(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[misc]


# -- hand-computed ------------------------------------------------------------


def test_standard_day_and_working_days_around_national_day() -> None:
    assert CN.standard_day_seconds == 8 * H
    assert CN.tz == SH
    # 2026-09-30 is a Wednesday; 10-01..03 and 10-05..07 are holidays (10-06 and
    # 10-07 are swapped days off), 10-04 is a Sunday, 10-10 (Saturday) and
    # 09-20 (Sunday) are adjusted working days, 09-25 (Friday) is Mid-Autumn.
    working = {d: CN.is_working_day(date(2026, 10, d)) for d in range(1, 13)}
    assert [d for d, w in working.items() if w] == [8, 9, 10, 12]
    assert CN.is_working_day(date(2026, 9, 30))
    assert CN.is_working_day(date(2026, 9, 20))
    assert not CN.is_working_day(date(2026, 9, 25))
    assert not CN.is_working_day(date(2026, 9, 19))  # an ordinary Saturday


def test_business_seconds_across_national_day() -> None:
    start = at(SH, 2026, 9, 30, 17)  # Wednesday 17:00
    end = at(SH, 2026, 10, 10, 10)  # adjusted Saturday 10:00
    # 09-30 17:00-18:00         3600
    # 10-01 .. 10-07 holidays      0
    # 10-08 Thursday           28800 (3 h + 5 h)
    # 10-09 Friday             28800
    # 10-10 09:00-10:00         3600
    assert CN.business_seconds(start, end) == 3600 + 28800 + 28800 + 3600 == 64800
    assert CN.business_seconds(end, start) == 0
    assert CN.business_seconds(start, start) == 0


def test_lunch_break_and_adjusted_day_spans() -> None:
    # 11:30-12:00 (1800) + lunch (0) + 13:00-13:30 (1800)
    assert CN.business_seconds(at(SH, 2026, 10, 12, 11, 30), at(SH, 2026, 10, 12, 13, 30)) == 3600
    # Sunday 09-20 is worked with the standard Monday spans, 01:00-04:00 and 05:00-10:00 UTC.
    assert CN.spans(date(2026, 9, 20)) == [
        (at(SH, 2026, 9, 20, 9), at(SH, 2026, 9, 20, 12)),
        (at(SH, 2026, 9, 20, 13), at(SH, 2026, 9, 20, 18)),
    ]
    assert CN.spans(date(2026, 10, 3)) == []
    assert CN.spans(date(2026, 10, 8))[0][0] == datetime(2026, 10, 8, 1, tzinfo=UTC)


def test_listed_holidays_extra_workdays_and_adjusted_hours() -> None:
    cal = shanghai(
        holidays=[date(2026, 10, 9)],
        extra_workdays=[date(2026, 10, 11)],
        adjusted_day_hours=[(9 * H, 12 * H)],
    )
    assert not cal.is_working_day(date(2026, 10, 9))
    assert cal.is_working_day(date(2026, 10, 11))
    # Friday 10-09 is now off; Sunday 10-11 works 09:00-12:00 only; 10-10 too (no Saturday hours).
    assert cal.business_seconds(at(SH, 2026, 10, 9, 0), at(SH, 2026, 10, 12, 0)) == 3 * H + 3 * H


def test_nth_working_day_end_across_holidays() -> None:
    # Working days after 09-30: 10-08 (1), 10-09 (2), 10-10 (3), 10-12 (4), ...
    assert CN.nth_working_day_end(date(2026, 9, 30), 1) == at(SH, 2026, 10, 8, 18)
    assert CN.nth_working_day_end(date(2026, 9, 30), 3) == at(SH, 2026, 10, 10, 18)
    # ... 10-13 (5), 10-14 (6), 10-15 (7), 10-16 (8), 10-19 (9), 10-20 (10)
    assert CN.nth_working_day_end(date(2026, 9, 30), 10) == at(SH, 2026, 10, 20, 18)
    with pytest.raises(InputError):
        CN.nth_working_day_end(date(2026, 9, 30), 0)


def test_local_date() -> None:
    assert CN.local_date(datetime(2026, 9, 30, 16, 30, tzinfo=UTC)) == date(2026, 10, 1)
    assert CN.local_date(datetime(2026, 9, 30, 15, 59, 59, tzinfo=UTC)) == date(2026, 9, 30)


def test_dst_days_new_york() -> None:
    # 2026-03-08 (spring forward 02:00 EST -> 03:00 EDT), Sunday spans 00:00-02:30 and
    # 03:00-04:00: 00:00 EST = 05:00Z; 02:30 does not exist, fold=0 reads it with EST
    # -> 07:30Z; 03:00 EDT = 07:00Z; 04:00 EDT = 08:00Z. Union 05:00Z-08:00Z = 3 h.
    assert NYC.spans(date(2026, 3, 8)) == [
        (datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 8, 8, tzinfo=UTC))
    ]
    day = (at(NY, 2026, 3, 8), at(NY, 2026, 3, 9))
    assert NYC.business_seconds(*day) == 3 * H
    # 2026-11-01 (fall back 02:00 EDT -> 01:00 EST, 01:00-01:59 happen twice):
    # 00:00 EDT = 04:00Z, 02:30 EST = 07:30Z -> 3.5 h (the repeated hour is worked
    # twice); 03:00-04:00 EST = 08:00Z-09:00Z -> 1 h. Total 4.5 h.
    assert NYC.business_seconds(at(NY, 2026, 11, 1), at(NY, 2026, 11, 2)) == 16200
    # An ordinary Sunday: 2.5 h + 1 h.
    assert NYC.business_seconds(at(NY, 2026, 3, 15), at(NY, 2026, 3, 16)) == int(3.5 * H)


def test_dst_days_paris_whole_sundays() -> None:
    assert PAR.business_seconds(at(PARIS, 2026, 3, 29), at(PARIS, 2026, 3, 30)) == 23 * H
    assert PAR.business_seconds(at(PARIS, 2026, 10, 25), at(PARIS, 2026, 10, 26)) == 25 * H
    assert PAR.business_seconds(at(PARIS, 2026, 3, 22), at(PARIS, 2026, 3, 23)) == 24 * H


@pytest.mark.parametrize(
    ("hours", "kwargs"),
    [
        ({0: [(13 * H, 18 * H), (9 * H, 12 * H)]}, {}),  # unsorted
        ({0: [(9 * H, 13 * H), (12 * H, 18 * H)]}, {}),  # overlapping
        ({0: [(9 * H, 86_401)]}, {}),  # past midnight
        ({0: [(9 * H, 9 * H)]}, {}),  # empty span
        ({7: [(9 * H, 18 * H)]}, {}),  # no such weekday
        ({}, {}),  # no hours at all
        (OFFICE, {"country": "XX"}),
        (OFFICE, {"country": "US", "subdiv": "ZZ"}),
        (OFFICE, {"adjusted_day_hours": [(5, 4)]}),
    ],
)
def test_invalid_calendars(hours: dict[int, list[tuple[int, int]]], kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        BusinessCalendar("bad", "Asia/Shanghai", hours, **kwargs)


def test_unknown_zone_and_naive_input() -> None:
    with pytest.raises(ConfigError):
        BusinessCalendar("bad", "Mars/Olympus", OFFICE)
    with pytest.raises(InputError):
        CN.business_seconds(datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_touching_spans_are_allowed_and_merged() -> None:
    cal = BusinessCalendar("t", "UTC", {0: [(9 * H, 12 * H), (12 * H, 13 * H)]})
    assert cal.standard_day_seconds == 4 * H
    assert cal.spans(date(2026, 10, 12)) == [
        (datetime(2026, 10, 12, 9, tzinfo=UTC), datetime(2026, 10, 12, 13, tzinfo=UTC))
    ]


# -- properties ---------------------------------------------------------------

_REF_PKG = {
    "cn-office": holidays.country_holidays("CN", years=range(2024, 2029)),
    "ny": holidays.country_holidays("US", subdiv="NY", years=range(2024, 2029)),
    "paris": holidays.country_holidays("FR", years=range(2024, 2029)),
}
_REF_HOURS = {"cn-office": OFFICE, "ny": NY_HOURS, "paris": PARIS_HOURS}
CALS = [CN, NYC, PAR]

LO = int(datetime(2025, 12, 1, tzinfo=UTC).timestamp())
HI = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
HOT = [  # around DST transitions and the Chinese holidays
    int(datetime(2026, 3, 8, 7, tzinfo=UTC).timestamp()),
    int(datetime(2026, 11, 1, 6, tzinfo=UTC).timestamp()),
    int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()),
    int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()),
    int(datetime(2026, 10, 1, tzinfo=UTC).timestamp()),
    int(datetime(2026, 12, 31, 16, tzinfo=UTC).timestamp()),
]
instants = st.one_of(
    st.integers(LO, HI),
    st.sampled_from(HOT).flatmap(lambda t: st.integers(t - 3 * 86_400, t + 3 * 86_400)),
).map(lambda s: datetime.fromtimestamp(s, UTC))


def reference_seconds(cal: BusinessCalendar, a: datetime, b: datetime) -> int:
    """Slow, independent: convert every working span of every date, union, clip."""
    if b <= a:
        return 0
    pkg, hours = _REF_PKG[cal.name], _REF_HOURS[cal.name]
    standard = hours[min(hours)]
    d = a.astimezone(cal.tz).date() - timedelta(days=2)
    last = b.astimezone(cal.tz).date() + timedelta(days=2)
    pieces: list[tuple[datetime, datetime]] = []
    while d <= last:
        if d in pkg.weekend_workdays:
            spans = hours.get(d.weekday()) or standard
        elif d.weekday() in hours and d not in pkg:
            spans = hours[d.weekday()]
        else:
            spans = []
        for s, e in spans:
            midnight = datetime(d.year, d.month, d.day)
            lo = (midnight + timedelta(seconds=s)).replace(tzinfo=cal.tz).astimezone(UTC)
            hi = (midnight + timedelta(seconds=e)).replace(tzinfo=cal.tz).astimezone(UTC)
            if hi > lo:
                pieces.append((lo, hi))
        d += timedelta(days=1)
    pieces.sort()
    merged: list[list[datetime]] = []
    for lo, hi in pieces:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    total = 0
    for lo, hi in merged:
        lo, hi = max(lo, a), min(hi, b)
        if hi > lo:
            total += int((hi - lo).total_seconds())
    return total


PROPS = settings(max_examples=200, deadline=None)


@PROPS
@given(st.sampled_from(CALS), instants, instants, instants)
def test_additivity(cal: BusinessCalendar, x: datetime, y: datetime, z: datetime) -> None:
    a, b, c = sorted((x, y, z))
    assert cal.business_seconds(a, c) == cal.business_seconds(a, b) + cal.business_seconds(b, c)


@PROPS
@given(st.sampled_from(CALS), instants, instants, st.integers(0, 5 * 86_400))
def test_bounds_and_monotonic(cal: BusinessCalendar, x: datetime, y: datetime, extra: int) -> None:
    a, b = sorted((x, y))
    got = cal.business_seconds(a, b)
    assert 0 <= got <= (b - a).total_seconds()
    assert cal.business_seconds(a, b + timedelta(seconds=extra)) >= got


@PROPS
@given(st.sampled_from(CALS), instants, st.integers(0, 60 * 86_400))
def test_matches_brute_force(cal: BusinessCalendar, a: datetime, length: int) -> None:
    b = a + timedelta(seconds=length)
    assert cal.business_seconds(a, b) == reference_seconds(cal, a, b)


@PROPS
@given(st.sampled_from(CALS), instants)
def test_working_span_counts_fully(cal: BusinessCalendar, x: datetime) -> None:
    for start, end in cal.spans(cal.local_date(x)):
        assert cal.business_seconds(start, end) == (end - start).total_seconds()


@PROPS
@given(st.sampled_from(CALS), instants, st.integers(1, 15))
def test_nth_working_day_end(cal: BusinessCalendar, x: datetime, n: int) -> None:
    after = cal.local_date(x)
    end = cal.nth_working_day_end(after, n)
    landed = cal.local_date(end - timedelta(seconds=1))
    assert landed > after
    assert cal.is_working_day(landed)
    assert cal.spans(landed)[-1][1] == end
    between = [after + timedelta(days=k) for k in range(1, (landed - after).days)]
    assert sum(cal.is_working_day(d) for d in between) == n - 1
