"""Business calendars: working hours, public holidays, adjusted working days.

Implements the "business time" of SPEC §10. Decisions beyond the SPEC:

- A date is a working day if it is an adjusted working day (even when it is
  also a holiday), or a weekday with hours that is not a holiday. An adjusted
  working day whose weekday has no hours works ``adjusted_day_hours``, by
  default the *standard working day* (the first weekday Mon..Sun with hours).
- Package data is read per year, lazily. The adjusted working days of year
  ``Y`` are the package's ``weekend_workdays`` dated in ``Y`` when loading
  ``Y`` or ``Y + 1`` (a year-end swap is filed under the next year); dates
  of other years that the package reports are ignored.
- Wall times become instants DST-safely: date + seconds as a naive wall time,
  zone attached with ``fold=0``, converted to UTC. Each date's spans are
  clipped to the date's own stretch ``[midnight, next midnight)`` (converted
  the same way), merged where they overlap or touch, and dropped when empty:
  working time is the union of spans and is never counted twice.
- :meth:`BusinessCalendar.nth_working_day_end` counts working days that keep
  at least one span after conversion.

Business time comes from a cumulative table of every span of the covered
years (extended lazily), so one query is two binary searches.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg

from core.errors import ConfigError, InputError

Span = tuple[int, int]

_DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_S = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)
_MAX_SEARCH_DAYS = 3_660
_MIN_YEAR, _MAX_YEAR = 2, 9_997


def _epoch(instant: datetime) -> int:
    """Whole seconds since the epoch of an aware instant (floored)."""
    return (instant - _EPOCH) // _ONE_S


def _instant(epoch: int) -> datetime:
    return _EPOCH + timedelta(seconds=epoch)


def _check_spans(label: str, spans: Sequence[Any]) -> tuple[Span, ...]:
    """Validate working spans: integer seconds, 0 ≤ start < end ≤ 86400, sorted, disjoint."""
    out: list[Span] = []
    prev_end = 0
    for item in spans:
        try:
            start, end = item
        except (TypeError, ValueError) as exc:
            msg = f"{label}: a span must be a (start, end) pair, got {item!r}"
            raise ConfigError(msg) from exc
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            msg = f"{label}: span bounds must be whole seconds, got {item!r}"
            raise ConfigError(msg)
        if not 0 <= start < end <= _DAY_S:
            msg = f"{label}: span {item!r} must satisfy 0 <= start < end <= 86400"
            raise ConfigError(msg)
        if start < prev_end:
            msg = f"{label}: spans must be sorted and must not overlap ({item!r})"
            raise ConfigError(msg)
        prev_end = end
        out.append((start, end))
    return tuple(out)


def _check_hours(name: str, hours: Mapping[int, Sequence[Any]]) -> dict[int, tuple[Span, ...]]:
    out: dict[int, tuple[Span, ...]] = {}
    for weekday, spans in hours.items():
        if not isinstance(weekday, int) or isinstance(weekday, bool) or not 0 <= weekday <= 6:
            msg = f"calendar {name}: weekday must be 0 (Mon) .. 6 (Sun), got {weekday!r}"
            raise ConfigError(msg)
        checked = _check_spans(f"calendar {name} weekday {weekday}", spans)
        if checked:
            out[weekday] = checked
    if not out:
        msg = f"calendar {name}: no weekday has working hours"
        raise ConfigError(msg)
    return out


@dataclass(frozen=True)
class _Table:
    """Every working span of the years [first_year, last_year], cumulated."""

    first_year: int
    last_year: int
    lo: int
    hi: int
    starts: list[int]
    ends: list[int]
    cum: list[int]  # business seconds before span i


_EMPTY = _Table(0, -1, 1, 0, [], [], [])


class BusinessCalendar:
    """Working hours, holidays and adjusted working days in one time zone."""

    def __init__(
        self,
        name: str,
        timezone: str,
        hours: Mapping[int, Sequence[tuple[int, int]]],
        country: str | None = None,
        subdiv: str | None = None,
        holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        adjusted_day_hours: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """Build a calendar.

        Args:
            name: The calendar's name (for messages).
            timezone: An IANA zone such as ``Asia/Shanghai``.
            hours: Weekday (0=Mon..6=Sun) to working spans in seconds since
                local midnight, e.g. ``{0: [(32400, 43200), (46800, 64800)]}``.
            country: ISO country code for the ``holidays`` package, or None.
            subdiv: Subdivision code for the package, or None.
            holidays: Extra public holidays.
            extra_workdays: Extra adjusted working days.
            adjusted_day_hours: Spans worked on an adjusted working day whose
                weekday has no hours; default the standard working day's.

        Raises:
            ConfigError: Unknown zone, country or subdivision, or invalid spans.
        """
        self.name = name
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            msg = f"calendar {name}: unknown time zone {timezone!r}"
            raise ConfigError(msg) from exc
        self._hours = _check_hours(name, hours)
        standard = self._hours[min(self._hours)]
        self.standard_day_seconds: int = sum(end - start for start, end in standard)
        if adjusted_day_hours is None:
            self._adjusted_hours = standard
        else:
            self._adjusted_hours = _check_spans(
                f"calendar {name} adjusted_day_hours", adjusted_day_hours
            )
            if not self._adjusted_hours:
                msg = f"calendar {name}: adjusted_day_hours must not be empty"
                raise ConfigError(msg)
        self._country = country
        self._subdiv = subdiv
        self._listed_holidays = frozenset(holidays)
        self._extra_workdays = frozenset(extra_workdays)
        self._packages: dict[int | None, Any] = {}
        self._years: dict[int, tuple[frozenset[date], frozenset[date]]] = {}
        self._days: dict[date, tuple[Span, ...]] = {}
        self._year_spans: dict[int, list[Span]] = {}
        self._nth: dict[tuple[date, int], datetime] = {}
        self._table = _EMPTY
        self._lock = threading.Lock()
        if country is not None:
            self._package(None)  # fail now on an unknown country/subdivision

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r}, {self._tz.key!r})"

    @property
    def country(self) -> str | None:
        """The ISO country code whose public holidays apply (None: no country)."""
        return self._country

    @property
    def tz(self) -> ZoneInfo:
        """The calendar's time zone."""
        return self._tz

    # -- days ----------------------------------------------------------------

    def _package(self, year: int | None) -> Any:
        """The package's holidays of ``year`` (None: of no year, to check the country)."""
        if year in self._packages:
            return self._packages[year]
        try:
            obj = holidays_pkg.country_holidays(
                self._country or "", subdiv=self._subdiv, years=() if year is None else year
            )
        except (NotImplementedError, KeyError, ValueError) as exc:
            where = f"{self._country}" + (f"/{self._subdiv}" if self._subdiv else "")
            msg = f"calendar {self.name}: holidays unknown for country/subdivision {where}: {exc}"
            raise ConfigError(msg) from exc
        self._packages[year] = obj
        return obj

    def _year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        """(holidays, adjusted working days) dated in ``year``."""
        cached = self._years.get(year)
        if cached is not None:
            return cached
        hol = {d for d in self._listed_holidays if d.year == year}
        adj = {d for d in self._extra_workdays if d.year == year}
        if self._country is not None:
            for y in (year, year + 1):
                obj = self._package(y)
                if y == year:
                    hol.update(d for d in obj if d.year == year)
                adj.update(d for d in getattr(obj, "weekend_workdays", ()) if d.year == year)
        cached = (frozenset(hol), frozenset(adj))
        self._years[year] = cached
        return cached

    def _wall_spans(self, d: date) -> tuple[Span, ...]:
        hol, adj = self._year(d.year)
        own = self._hours.get(d.weekday())
        if d in adj:
            return own or self._adjusted_hours
        if own and d not in hol:
            return own
        return ()

    def is_working_day(self, d: date) -> bool:
        """Whether the local date ``d`` is a working day.

        Args:
            d: A local date.

        Returns:
            True for an adjusted working day, or a weekday with hours that is not a holiday.
        """
        return bool(self._wall_spans(d))

    def _wall_epoch(self, d: date, seconds: int) -> int:
        wall = datetime(d.year, d.month, d.day) + timedelta(seconds=seconds)
        return _epoch(wall.replace(tzinfo=self._tz, fold=0))

    def _day(self, d: date) -> tuple[Span, ...]:
        """The working spans of local date ``d`` as epoch seconds, merged and clipped."""
        cached = self._days.get(d)
        if cached is not None:
            return cached
        wall = self._wall_spans(d)
        merged: list[list[int]] = []
        if wall:
            lo, hi = self._wall_epoch(d, 0), self._wall_epoch(d, _DAY_S)
            converted = sorted(
                (max(lo, self._wall_epoch(d, s)), min(hi, self._wall_epoch(d, e))) for s, e in wall
            )
            for start, end in converted:
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                elif end > start:
                    merged.append([start, end])
        result = tuple((s, e) for s, e in merged)
        self._days[d] = result
        return result

    def spans(self, d: date) -> list[tuple[datetime, datetime]]:
        """The working spans of a local date as aware UTC instants.

        Args:
            d: A local date.

        Returns:
            The spans [start, end), oldest first; empty when ``d`` is not a working day.
        """
        return [(_instant(s), _instant(e)) for s, e in self._day(d)]

    def local_date(self, instant: datetime) -> date:
        """The calendar-local date holding an aware instant.

        Args:
            instant: An aware datetime.

        Returns:
            Its date in the calendar's zone.
        """
        if instant.tzinfo is None:
            msg = f"naive datetime {instant.isoformat()} has no time zone"
            raise InputError(msg)
        return instant.astimezone(self._tz).date()

    def nth_working_day_end(self, after: date, n: int) -> datetime:
        """The end of the last working span of the n-th working day strictly after ``after``.

        Args:
            after: A local date (not counted).
            n: Which working day, 1 for the next one.

        Returns:
            An aware UTC instant.

        Raises:
            InputError: ``n`` is below 1.
            ConfigError: No such working day within ten years.
        """
        if n < 1:
            msg = f"n must be at least 1, got {n}"
            raise InputError(msg)
        cached = self._nth.get((after, n))
        if cached is not None:
            return cached
        d, found = after, 0
        for _ in range(_MAX_SEARCH_DAYS + n):
            d += _ONE_DAY
            spans = self._day(d)
            if spans:
                found += 1
                if found == n:
                    result = _instant(spans[-1][1])
                    self._nth[(after, n)] = result
                    return result
        msg = f"calendar {self.name}: no {n}th working day after {after.isoformat()}"
        raise ConfigError(msg)

    # -- business time -------------------------------------------------------

    def _spans_of_year(self, year: int) -> list[Span]:
        cached = self._year_spans.get(year)
        if cached is None:
            first, ndays = date(year, 1, 1), (date(year + 1, 1, 1) - date(year, 1, 1)).days
            cached = [sp for k in range(ndays) for sp in self._day(first + timedelta(days=k))]
            self._year_spans[year] = cached
        return cached

    def _extend(self, a: int, b: int) -> _Table:
        """Make the table cover the epoch seconds [a, b] (one year of margin each side)."""
        with self._lock:
            table = self._table
            if table.lo <= a and b <= table.hi:
                return table
            first = max(_MIN_YEAR, _instant(a).year - 1)
            last = min(_MAX_YEAR, _instant(b).year + 1)
            if table.first_year <= table.last_year:
                first = min(first, table.first_year)
                last = max(last, table.last_year)
            spans = [sp for year in range(first, last + 1) for sp in self._spans_of_year(year)]
            starts, ends = [s for s, _ in spans], [e for _, e in spans]
            cum = [0, *accumulate(e - s for s, e in zip(starts, ends, strict=True))][:-1]
            table = _Table(
                first_year=first,
                last_year=last,
                lo=self._wall_epoch(date(first, 1, 1), 0),
                hi=self._wall_epoch(date(last + 1, 1, 1), 0),
                starts=starts,
                ends=ends,
                cum=cum,
            )
            if not (table.lo <= a and b <= table.hi):
                msg = f"instants out of the supported range ({_MIN_YEAR}..{_MAX_YEAR})"
                raise InputError(msg)
            self._table = table
            return table

    def business_seconds(self, start: datetime, end: datetime) -> int:
        """Business time between two instants.

        Args:
            start: Aware instant.
            end: Aware instant.

        Returns:
            Seconds of [start, end) inside working spans; 0 when end <= start.
        """
        try:
            a = (start - _EPOCH) // _ONE_S
            b = (end - _EPOCH) // _ONE_S
        except TypeError as exc:
            msg = "business_seconds needs aware datetimes"
            raise InputError(msg) from exc
        if b <= a:
            return 0
        table = self._table
        if a < table.lo or b > table.hi:
            table = self._extend(a, b)
        starts, ends, cum = table.starts, table.ends, table.cum
        i = bisect_right(starts, b) - 1
        if i < 0:
            return 0
        e = ends[i]
        fb = cum[i] + (b if b < e else e) - starts[i]
        j = bisect_right(starts, a) - 1
        if j < 0:
            return fb
        e = ends[j]
        return fb - cum[j] - (a if a < e else e) + starts[j]
