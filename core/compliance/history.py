"""Reading an incident's status history (SPEC §10, "Per incident").

Decisions beyond the SPEC, applied exactly:

- Every instant is truncated to whole seconds (aware UTC); the history is
  sorted by instant, stably (entries at the same instant keep their order).
- Before its first entry an incident is taken to be ``new``; when the history
  is empty or starts after ``created_at`` it is ``new`` from ``created_at``
  until the first entry.
- ``first_response_at`` is the instant of the first entry whose category is
  not ``new`` (whatever it moves to, ``waiting`` and ``cancelled`` included).
- A *reopen* is an entry into ``new``/``in_progress``/``waiting`` from
  ``resolved``/``closed``.
- A *resolution* is an entry into ``resolved`` from any other category, or an
  entry into ``closed`` from an open category (``new``/``in_progress``/
  ``waiting``): closing without resolving counts. ``resolved`` → ``closed`` is
  not a new resolution.
- Resolution ``i`` owns the window from its entry until the next boundary
  entry: the next reopen, or the next resolution when one follows without a
  reopen in between (``closed`` → ``resolved``, ``cancelled`` → ``resolved``),
  so that windows never overlap. The last window is open-ended.
- The final resolution is the last resolution, provided no reopen follows it
  and the incident's last category is not open; otherwise there is none.
- Resolution time is the business time spent in ``new`` or ``in_progress``
  within ``[created_at, resolved_at]`` (time before ``created_at`` does not
  count, like the response time, which is 0 when the first response precedes
  ``created_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from core.calendar import BusinessCalendar
from core.compliance.frozen import quick_init
from core.errors import InputError
from core.records import Category, StatusChange
from core.timeutil import to_utc

OPEN = frozenset({Category.NEW, Category.IN_PROGRESS, Category.WAITING})
DONE = frozenset({Category.RESOLVED, Category.CLOSED})
ACTIVE = frozenset({Category.NEW, Category.IN_PROGRESS})


@quick_init
@dataclass(frozen=True)
class Resolution:
    """One resolution: its instant and the end of its callback window (None: open-ended)."""

    at: datetime
    window_end: datetime | None


@quick_init
@dataclass(frozen=True)
class Timeline:
    """The facts read from a status history."""

    created_at: datetime
    entries: tuple[StatusChange, ...]
    first_response_at: datetime | None
    resolutions: tuple[Resolution, ...]
    final_index: int | None
    reopen_count: int
    last_category: Category

    @property
    def resolved_at(self) -> datetime | None:
        """The final resolution's instant, or None."""
        if self.final_index is None:
            return None
        return self.resolutions[self.final_index].at

    @property
    def cancelled(self) -> bool:
        """Whether the last category is ``cancelled``."""
        return self.last_category == Category.CANCELLED


def _category(value: str) -> Category:
    try:
        return Category(value)
    except ValueError as exc:
        msg = f"unknown status category {value!r}"
        raise InputError(msg) from exc


def _canonical(e: StatusChange) -> StatusChange:
    """``e`` with its instant whole-second UTC and its category a :class:`Category`.

    ``e`` itself when it already is (the store's histories): no copy.
    """
    at = e.at
    if (
        at.tzinfo is UTC
        and not at.microsecond
        and type(e) is StatusChange
        and type(e.category) is Category
    ):
        return e
    return StatusChange(to_utc(at), _category(e.category), e.status)


_AT = attrgetter("at")


def build_timeline(created_at: datetime, history: Sequence[StatusChange]) -> Timeline:
    """Read first response, resolutions, reopens and windows from a status history.

    Args:
        created_at: When the incident was created (aware).
        history: Status changes in any order.

    Returns:
        The timeline, with every instant truncated to whole seconds in UTC.

    Raises:
        InputError: A naive instant or an unknown category.
    """
    created = to_utc(created_at)
    entries = tuple(sorted(map(_canonical, history), key=_AT))
    prev = Category.NEW
    first_response: datetime | None = None
    resolution_idx: list[int] = []
    boundaries: list[int] = []  # entry indices that end a window
    reopens = 0
    last_reopen = -1
    for i, entry in enumerate(entries):
        cat = entry.category
        if first_response is None and cat != Category.NEW:
            first_response = entry.at
        if cat in OPEN and prev in DONE:
            reopens += 1
            last_reopen = i
            boundaries.append(i)
        elif (cat == Category.RESOLVED and prev != Category.RESOLVED) or (
            cat == Category.CLOSED and prev in OPEN
        ):
            resolution_idx.append(i)
            boundaries.append(i)
        prev = cat
    resolutions = []
    for k in resolution_idx:
        nxt = next((b for b in boundaries if b > k), None)
        end = entries[nxt].at if nxt is not None else None
        resolutions.append(Resolution(at=entries[k].at, window_end=end))
    final: int | None = None
    if resolution_idx and resolution_idx[-1] > last_reopen and prev not in OPEN:
        final = len(resolution_idx) - 1
    return Timeline(
        created_at=created,
        entries=entries,
        first_response_at=first_response,
        resolutions=tuple(resolutions),
        final_index=final,
        reopen_count=reopens,
        last_category=prev,
    )


def active_seconds(timeline: Timeline, calendar: BusinessCalendar, until: datetime) -> int:
    """Business time spent in ``new`` or ``in_progress`` within [created_at, until].

    Args:
        timeline: The incident's timeline.
        calendar: The policy's calendar.
        until: Where to stop counting (the final resolution's instant).

    Returns:
        Business seconds.
    """
    return seconds_in(timeline, until, ACTIVE, calendar.business_seconds)


def seconds_in(
    timeline: Timeline,
    until: datetime,
    kinds: frozenset[Category] | set[Category],
    measure: Callable[[datetime, datetime], int],
) -> int:
    """Time spent in the categories ``kinds`` within [created_at, until], by ``measure``.

    ``measure(lo, hi)`` gives the length of one span (business or elapsed
    seconds); the time before the first status change counts as ``new``.
    """
    created = timeline.created_at
    entries = timeline.entries
    total = 0
    # the segments: (created, first entry) in ``new``, then each entry until the next one
    if (not entries or entries[0].at > created) and Category.NEW in kinds:
        hi = until if not entries else min(entries[0].at, until)
        if hi > created:
            total += measure(created, hi)
    last = len(entries) - 1
    for i, entry in enumerate(entries):
        if entry.category not in kinds:
            continue
        lo = max(entry.at, created)
        hi = until if i == last else min(entries[i + 1].at, until)
        if hi > lo:
            total += measure(lo, hi)
    return total
