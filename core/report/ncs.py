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
from typing import Any

from core.export.as_of import Period


def nc_section(periods: Sequence[Period]) -> dict[str, Any]:
    """``overdue`` (rows), ``closure`` (count, median_s, mean_s)."""
    overdue: list[dict[str, Any]] = []
    closure: list[int] = []
    for p in periods:
        for j in p.incidents:
            for f in j.evaluation.findings:
                nc = j.ncs.get(f.key)
                if nc is not None and nc.state == "closed" and nc.closed_at is not None:
                    closure.append(max(0, int((nc.closed_at - f.raised_at).total_seconds())))
                elif f.deadline < p.as_of:
                    overdue.append(
                        {
                            "policy": p.policy,
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
                    )
    overdue.sort(key=lambda r: (r["deadline"], r["source"], r["incident_key"], r["rule"]))
    return {
        "overdue": overdue,
        "closure": {
            "closed": len(closure),
            "median_s": int(statistics.median(closure)) if closure else None,
            "mean_s": round(statistics.fmean(closure)) if closure else None,
        },
    }
