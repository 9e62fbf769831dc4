"""A month's §10 indicators over one or more policies' folds, and per group.

One policy: exactly :func:`core.export.as_of.indicators_as_of` (the export's
numbers; both are :class:`core.compliance.indicators.IndicatorsFold`).
Several policies together: every count, numerator and denominator is the
sum of the policies' (each judged under its own rules); the mean scores are
recomputed over all the scores (their exact sums), never averaged from means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from core.compliance.indicators import CHANNELS, IndicatorsFold
from core.compliance.scores import round4
from core.export.as_of import Judged

DIMENSIONS: dict[str, Callable[[Judged], str]] = {
    "source": lambda j: j.incident.source,
    "service": lambda j: j.incident.service or "",
    "priority": lambda j: j.incident.priority or "",
    "customer": lambda j: j.incident.customer or "",
}
"""The breakdowns of the report: source, service, priority, customer organisation."""


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif key in ("rate", "month") or key not in into:
            into[key] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            into[key] = (into[key] or 0) + value


def _rates(doc: dict[str, Any]) -> None:
    for value in doc.values():
        if isinstance(value, dict):
            if "numerator" in value and "denominator" in value:
                den = value["denominator"]
                value["rate"] = value["numerator"] / den if den else None
            else:
                _rates(value)


def indicators_of(folds: Sequence[IndicatorsFold]) -> dict[str, Any]:
    """The indicators (``MonthlyIndicators.as_dict()`` form) of ``folds`` together."""
    if len(folds) == 1:
        return folds[0].result().as_dict()
    total: dict[str, Any] = {}
    for fold in folds:
        _add(total, fold.result().as_dict())
    _rates(total)
    for channel in CHANNELS:
        n = sum(f.scored(channel) for f in folds)
        exact_sum = sum((f.score_sum(channel) for f in folds), start=Fraction(0))
        total.setdefault("mean_score", {})[channel] = round4(exact_sum / n) if n else None
    return total


def breakdown(
    groups: Sequence[dict[str, dict[str, IndicatorsFold]]],
) -> dict[str, dict[str, Any]]:
    """Dimension → group value → the group's indicators (groups in sorted order).

    ``groups``: per policy, dimension → group value → that group's fold.
    """
    out: dict[str, dict[str, Any]] = {}
    for dim in DIMENSIONS:
        merged: dict[str, list[IndicatorsFold]] = {}
        for per_policy in groups:
            for value, fold in per_policy.get(dim, {}).items():
                merged.setdefault(value, []).append(fold)
        out[dim] = {value: indicators_of(merged[value]) for value in sorted(merged)}
    return out
