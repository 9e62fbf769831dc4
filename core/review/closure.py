"""Nonconformity closure statistics of a year, as they stood at ``as_of``.

Every nonconformity raised in the year (months in the configured zone) and
recorded by ``as_of`` counts once, in the month it was raised:

- ``closed_on_time``: its ticket closed by ``as_of``, at or before the deadline;
- ``closed_late``: closed by ``as_of``, after the deadline;
- ``open_overdue``: not closed by ``as_of`` and the deadline passed;
- ``open_in_time``: not closed by ``as_of``, deadline still ahead;
- ``withdrawn``: withdrawn by ``as_of`` (the facts no longer support it;
  counted apart, in no other column).

Time to close: raised → ticket closed, whole seconds; the median is over
the closed ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.compliance.as_of import seen_at
from core.store.models import Nonconformity
from core.timeutil import month_bounds

ROWS = 2000
COLUMNS = ("raised", "closed_on_time", "closed_late", "open_overdue", "open_in_time", "withdrawn")


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    to_close: list[int] = field(default_factory=list)

    def add(self, column: str, seconds: int | None) -> None:
        self.counts["raised"] += 1
        self.counts[column] += 1
        if seconds is not None:
            self.to_close.append(seconds)

    def document(self) -> dict[str, Any]:
        closed = self.counts["closed_on_time"] + self.counts["closed_late"]
        judged = self.counts["raised"] - self.counts["withdrawn"]
        return {
            **self.counts,
            "closed_on_time_rate": self.counts["closed_on_time"] / judged if judged else None,
            "closed": closed,
            "median_close_s": int(statistics.median(self.to_close)) if self.to_close else None,
        }


def _rows(
    s: Session, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime, datetime | None, datetime | None, datetime, str, str]]:
    last_id = 0
    while True:
        rows = s.execute(
            select(
                Nonconformity.id,
                Nonconformity.raised_at,
                Nonconformity.deadline,
                Nonconformity.closed_at,
                Nonconformity.withdrawn_at,
                Nonconformity.created_at,
                Nonconformity.state,
                Nonconformity.severity,
            )
            .where(
                Nonconformity.raised_at >= start,
                Nonconformity.raised_at < end,
                Nonconformity.id > last_id,
            )
            .order_by(Nonconformity.id)
            .limit(ROWS)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        for row in rows:
            yield row[1], row[2], row[3], row[4], row[5], row[6], row[7]


def _column(
    deadline: datetime,
    closed_at: datetime | None,
    withdrawn_at: datetime | None,
    state: str,
    as_of: datetime,
) -> str:
    if state == "withdrawn" and withdrawn_at is not None and seen_at(withdrawn_at, as_of):
        return "withdrawn"
    if closed_at is not None and seen_at(closed_at, as_of):
        return "closed_on_time" if closed_at <= deadline else "closed_late"
    return "open_overdue" if deadline < as_of else "open_in_time"


def closure_section(
    s: Session, months: Sequence[str], timezone: str, as_of: datetime
) -> dict[str, Any]:
    """Per month (raised in it) and for the whole span: counts, on-time rate, median time."""
    tz = ZoneInfo(timezone)
    bounds = [(m, *month_bounds(m, tz)) for m in months]
    per_month = {m: _Tally() for m in months}
    per_severity: dict[str, _Tally] = {}
    total = _Tally()
    start, end = bounds[0][1], bounds[-1][2]
    for raised, deadline, closed_at, withdrawn_at, created, state, severity in _rows(s, start, end):
        if not seen_at(created, as_of):
            continue
        column = _column(deadline, closed_at, withdrawn_at, state, as_of)
        seconds = (
            max(0, int((closed_at - raised).total_seconds()))
            if closed_at is not None and column.startswith("closed")
            else None
        )
        month = next(m for m, lo, hi in bounds if lo <= raised < hi)
        for tally in (per_month[month], per_severity.setdefault(severity, _Tally()), total):
            tally.add(column, seconds)
    return {
        "months": [{"month": m, **per_month[m].document()} for m in months],
        "by_severity": {sev: t.document() for sev, t in sorted(per_severity.items())},
        "total": total.document(),
    }
