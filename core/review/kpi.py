"""KPI completion: each month's §10 indicators against the policy's targets.

The targets are the policy's ``kpi:`` block (shares from 0 to 1, e.g.
``callback_on_time: 0.95``); they are management goals, not rules: they
change no verdict and no policy version. A KPI is *met* in a month when its
rate is at least the target; a month whose denominator is 0 is not measured
(neither met nor missed). The year's rate is the sum of the months'
numerators over the sum of their denominators, never an average of rates.
The months' indicators are the monthly report's and the export's, judged as
of the same instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.report.fold import MonthFold
from core.report.indicators import indicators_of
from core.runtime import Runtime

KPIS: dict[str, tuple[str, ...]] = {
    "callback_coverage": ("callback_coverage",),
    "callback_on_time": ("callback_on_time",),
    "confirmed_resolution": ("confirmed_resolution",),
    "csat_callback": ("csat", "callback"),
    "csat_survey": ("csat", "survey"),
    "response": ("response",),
    "resolution": ("resolution",),
}
"""KPI name (the key under a policy's ``kpi:``) → path of its ratio in the indicators."""


def kpi_targets(rt: Runtime, policy: str) -> dict[str, float]:
    """The ``kpi:`` targets configured for ``policy`` (only those given)."""
    raw = (rt.config.data.get("policies") or {}).get(policy) or {}
    return {name: float(value) for name, value in (raw.get("kpi") or {}).items() if name in KPIS}


def _ratio(ind: dict[str, Any], path: tuple[str, ...]) -> tuple[int, int]:
    node: Any = ind
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return 0, 0
    return int(node.get("numerator") or 0), int(node.get("denominator") or 0)


def _cell(num: int, den: int, target: float | None) -> dict[str, Any]:
    rate = num / den if den else None
    met = None if rate is None or target is None else rate >= target
    return {"numerator": num, "denominator": den, "rate": rate, "target": target, "met": met}


def kpi_section(
    rt: Runtime, s: Session, policy: str, months: Sequence[str], as_of: datetime
) -> dict[str, Any]:
    """One policy's KPIs per month and for the year, with the months met and missed."""
    targets = kpi_targets(rt, policy)
    rows: list[dict[str, Any]] = []
    sums = {name: [0, 0] for name in KPIS}
    for month in months:
        ind = indicators_of([MonthFold.judge(rt, s, policy, month, as_of).indicators])
        cells = {}
        for name, path in KPIS.items():
            num, den = _ratio(ind, path)
            sums[name][0] += num
            sums[name][1] += den
            cells[name] = _cell(num, den, targets.get(name))
        rows.append({"month": month, "resolved": ind["resolved"], "kpis": cells})
    year = {}
    for name in KPIS:
        num, den = sums[name]
        cell = _cell(num, den, targets.get(name))
        verdicts = [r["kpis"][name]["met"] for r in rows]
        cell["months_met"] = sum(v is True for v in verdicts)
        cell["months_missed"] = sum(v is False for v in verdicts)
        year[name] = cell
    return {
        "policy": policy,
        "version": rt.policy(policy).version,
        "targets": targets,
        "months": rows,
        "year": year,
    }
