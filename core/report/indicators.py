"""A month's §10 indicators over one or more policies' judged incidents, and per group.

One policy: exactly :func:`core.export.as_of.indicators_as_of` (the export's
numbers). Several policies together: every count, numerator and denominator
is the sum of the policies' (each judged under its own rules); the mean
scores are recomputed over all the scores, never averaged from means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.compliance.scores import mean_score
from core.export.as_of import Judged, Period, indicators_as_of
from core.runtime import Runtime

DIMENSIONS: dict[str, Callable[[Judged], str]] = {
    "source": lambda j: j.incident.source,
    "service": lambda j: j.incident.service or "",
    "priority": lambda j: j.incident.priority or "",
    "customer": lambda j: j.incident.customer or "",
}
"""The breakdowns of the report: source, service, priority, customer organisation."""

CHANNELS_SCORES = {"callback": "callback_score", "survey": "survey_score"}
"""Score channel → the evaluation's attribute holding that channel's score."""


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


def indicators_of(rt: Runtime, periods: Sequence[Period]) -> dict[str, Any]:
    """The indicators (``MonthlyIndicators.as_dict()`` form) of ``periods`` together."""
    if len(periods) == 1:
        return indicators_as_of(rt, periods[0]).as_dict()
    total: dict[str, Any] = {}
    for p in periods:
        _add(total, indicators_as_of(rt, p).as_dict())
    _rates(total)
    for channel, attr in CHANNELS_SCORES.items():
        scores = [
            getattr(j.evaluation, attr)
            for p in periods
            for j in p.incidents
            if getattr(j.evaluation, attr) is not None
        ]
        total.setdefault("mean_score", {})[channel] = mean_score(scores)
    return total


def breakdown(rt: Runtime, periods: Sequence[Period]) -> dict[str, dict[str, Any]]:
    """Dimension → group value → the group's indicators (groups in sorted order)."""
    out: dict[str, dict[str, Any]] = {}
    for dim, key in DIMENSIONS.items():
        groups: dict[str, list[Period]] = {}
        for p in periods:
            members: dict[str, list[Judged]] = {}
            for j in p.incidents:
                members.setdefault(key(j), []).append(j)
            for value, judged in members.items():
                groups.setdefault(value, []).append(Period(p.policy, p.month, p.as_of, judged))
        out[dim] = {value: indicators_of(rt, groups[value]) for value in sorted(groups)}
    return out
