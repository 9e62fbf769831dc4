"""A complaint's deadline: business time after its receipt, on the policy's calendar."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.calendar import BusinessCalendar
from core.errors import ConfigError
from core.timeutil import Duration

MAX_DAYS = 3660
"""How far ahead a deadline is searched before the calendar is called unusable."""


def business_deadline(cal: BusinessCalendar, start: datetime, wait: Duration) -> datetime:
    """``start`` plus ``wait`` counted on ``cal``: business days, then working seconds.

    ``3bd`` ends with the last working span of the third working day
    strictly after ``start``'s local date (as a rectification deadline
    does); ``8h`` is eight hours of working time from ``start``.
    """
    at = start
    if wait.business_days:
        at = cal.nth_working_day_end(cal.local_date(start), wait.business_days)
    left = wait.seconds
    if left <= 0:
        return at
    day = cal.local_date(at)
    for _ in range(MAX_DAYS):
        for begin, end in cal.spans(day):
            if end <= at:
                continue
            begin = max(begin, at)
            span = int((end - begin).total_seconds())
            if span >= left:
                return begin + timedelta(seconds=left)
            left -= span
        day += timedelta(days=1)
    msg = f"calendar {cal.name}: no working time within {MAX_DAYS} days of {start.isoformat()}"
    raise ConfigError(msg)
