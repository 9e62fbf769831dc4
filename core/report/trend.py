"""The 12-month trend and the month's biggest changes against the month before.

The trend keeps, per month (oldest first, the report's month last), the
series the charts draw: callback on time and coverage, CSAT and mean per
channel, response and resolution compliance per priority, nonconformities
by rule and severity. The summary ranks the rates that moved most (in
percentage points) between the last two months; the words come from the
catalogue (:mod:`core.report.catalogue`).
"""

from __future__ import annotations

from typing import Any

from core.timeutil import previous_month

MONTHS = 12
SUMMARY_SIZE = 3

SUMMARY_RATES = (
    ("callback_on_time",),
    ("callback_coverage",),
    ("confirmed_resolution",),
    ("csat", "callback"),
    ("csat", "survey"),
    ("response",),
    ("resolution",),
)
"""The rates the summary compares (paths into the indicators)."""


def months_back(period: str, n: int = MONTHS) -> list[str]:
    """The ``n`` months ending with ``period``, oldest first."""
    months = [period]
    while len(months) < n:
        months.append(previous_month(months[-1]))
    return months[::-1]


def _rate(ind: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = ind
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("rate") if isinstance(node, dict) else None


def trend_point(ind: dict[str, Any]) -> dict[str, Any]:
    """One month of the trend, from its indicators."""
    return {
        "month": ind["month"],
        "resolved": ind["resolved"],
        "callback_on_time": _rate(ind, ("callback_on_time",)),
        "callback_coverage": _rate(ind, ("callback_coverage",)),
        "csat": {ch: _rate(ind, ("csat", ch)) for ch in ind["csat"]},
        "mean_score": dict(ind["mean_score"]),
        "response_by_priority": {p: r["rate"] for p, r in ind["response_by_priority"].items()},
        "resolution_by_priority": {p: r["rate"] for p, r in ind["resolution_by_priority"].items()},
        "nonconformities": {r: dict(sev) for r, sev in ind["nonconformities"].items()},
    }


def summary(current: dict[str, Any], before: dict[str, Any]) -> list[dict[str, Any]]:
    """The biggest moves of the rates from ``before`` to ``current``, largest first.

    Each: ``indicator`` (dotted path), ``before``, ``after`` (rates),
    ``change_pp`` (percentage points, 1 decimal), ``direction`` (up, down).
    Plus the nonconformity total when it changed.
    """
    moves: list[dict[str, Any]] = []
    for path in SUMMARY_RATES:
        a, b = _rate(before, path), _rate(current, path)
        if a is None or b is None or a == b:
            continue
        change = round((b - a) * 100, 1)
        moves.append(
            {
                "indicator": ".".join(path),
                "before": a,
                "after": b,
                "change_pp": change,
                "direction": "up" if b > a else "down",
            }
        )
    moves.sort(key=lambda m: (-abs(m["after"] - m["before"]), m["indicator"]))
    out = moves[:SUMMARY_SIZE]
    n0, n1 = before["nonconformities_total"], current["nonconformities_total"]
    if n0 != n1:
        out.append(
            {
                "indicator": "nonconformities_total",
                "before": n0,
                "after": n1,
                "change_pp": None,
                "direction": "up" if n1 > n0 else "down",
            }
        )
    return out
