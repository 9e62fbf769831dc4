"""The month's nonconformities: open past deadline with their tickets, and closure times.

Counts by rule and severity are the indicators' (``nonconformities``). A
nonconformity is open unless its ticket was closed at or before ``as_of``
(as in the export); it is past deadline when open and its deadline is
before ``as_of``. Closure time: from raised-at to the ticket's closing, in
seconds; median and mean (rounded to whole seconds) over the closed ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from core.export.as_of import Judged, period_order

OVERDUE_ORDER = ("deadline", "source", "incident_key", "rule")
"""The overdue rows' order (ties: policy, then the period's order)."""


class NcFold:
    """One policy's month of nonconformities, folded a judged incident at a time."""

    def __init__(self, policy: str, as_of: datetime) -> None:
        self.policy, self.as_of = policy, as_of
        self.overdue: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        """(the period's order, finding index) → row."""
        self.closure: list[int] = []

    def add(self, j: Judged) -> None:
        for n, f in enumerate(j.evaluation.findings):
            nc = j.ncs.get(f.key)
            if nc is not None and nc.state == "closed" and nc.closed_at is not None:
                self.closure.append(max(0, int((nc.closed_at - f.raised_at).total_seconds())))
            elif f.deadline < self.as_of:
                row = {
                    "policy": self.policy,
                    "source": j.incident.source,
                    "incident_key": j.incident.key,
                    "external_id": j.incident.external_id,
                    "rule": f.rule,
                    "severity": f.severity,
                    "raised_at": f.raised_at.isoformat(),
                    "deadline": f.deadline.isoformat(),
                    "ticket_ref": nc.ticket_ref if nc else None,
                    "ticket_url": nc.ticket_url if nc else None,
                }
                self.overdue.append(((*period_order(j, self.as_of), n), row))


def nc_section(folds: Sequence[NcFold]) -> dict[str, Any]:
    """``overdue`` (rows), ``closure`` (count, median_s, mean_s) of the policies' folds."""
    overdue = [row for fold in folds for _, row in sorted(fold.overdue, key=itemgetter(0))]
    overdue.sort(key=itemgetter(*OVERDUE_ORDER))
    closure = [s for fold in folds for s in fold.closure]
    return {
        "overdue": overdue,
        "closure": {
            "closed": len(closure),
            "median_s": int(statistics.median(closure)) if closure else None,
            "mean_s": round(statistics.fmean(closure)) if closure else None,
        },
    }
