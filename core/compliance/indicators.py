"""Monthly indicators (SPEC §10, R4).

Decisions beyond the SPEC, applied exactly:

- Rows kept: ``evaluation.month == month`` and not cancelled.
- Callback coverage and on time share one denominator: resolved incidents
  minus those whose final verdict is ``pending`` or ``untracked`` (§11);
  ``untracked`` ones are counted apart (``untracked``).
- Confirmed resolution: final resolution confirmed True over final
  resolutions whose first reached attempt gave an answer (``confirmed`` not None).
- CSAT per channel (``callback``: the final resolution's callback score;
  ``survey``: the survey score): :meth:`Policy.csat_share` (scores that are
  not low, ``>= low_score_below``, over scored incidents); the mean is
  exact, rounded to 4 decimals (ties half up), None without scores.
- Response/resolution compliance: met over measured (``met`` not None),
  overall and per priority; ``P1``..``P4`` are always present, any other
  priority met in the rows is added after them in sorted order.
- Nonconformities: counted per rule and severity; the six SPEC rules are
  always present (other rules added in sorted order); open past deadline =
  not closed and ``deadline < now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.compliance.evaluate import Evaluation
from core.compliance.policy import MAJOR, MINOR, CallbackVerdict, Policy
from core.compliance.rules import RULES
from core.compliance.scores import mean_score
from core.records import PRIORITIES
from core.timeutil import parse_month

CHANNELS = ("callback", "survey")
_COVERED = frozenset({CallbackVerdict.ON_TIME, CallbackVerdict.LATE, CallbackVerdict.UNREACHED_OK})
_NOT_JUDGED = frozenset({CallbackVerdict.PENDING, CallbackVerdict.UNTRACKED})


@dataclass(frozen=True)
class Ratio:
    """A rate kept as numerator and denominator."""

    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        """numerator / denominator, None when the denominator is 0."""
        return self.numerator / self.denominator if self.denominator else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"numerator": self.numerator, "denominator": self.denominator, "rate": self.rate}


@dataclass(frozen=True)
class NonconformityState:
    """A nonconformity of one of the month's incidents, as tracked."""

    rule: str
    severity: str
    closed: bool
    deadline: datetime


@dataclass(frozen=True)
class MonthlyIndicators:
    """The indicators of one month."""

    month: str
    resolved: int
    untracked: int
    """Resolved incidents whose final callback verdict is ``untracked`` (§11), counted apart."""
    callback_coverage: Ratio
    callback_on_time: Ratio
    confirmed_resolution: Ratio
    csat: Mapping[str, Ratio]
    mean_score: Mapping[str, float | None]
    response: Ratio
    response_by_priority: Mapping[str, Ratio]
    resolution: Ratio
    resolution_by_priority: Mapping[str, Ratio]
    nonconformities: Mapping[str, Mapping[str, int]]
    nonconformities_total: int
    nonconformities_closed: int
    nonconformities_open_past_deadline: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; ratios as ``{"numerator", "denominator", "rate"}``.

        Returns:
            A dict of plain values.
        """
        return {
            "month": self.month,
            "resolved": self.resolved,
            "untracked": self.untracked,
            "callback_coverage": self.callback_coverage.as_dict(),
            "callback_on_time": self.callback_on_time.as_dict(),
            "confirmed_resolution": self.confirmed_resolution.as_dict(),
            "csat": {k: v.as_dict() for k, v in self.csat.items()},
            "mean_score": dict(self.mean_score),
            "response": self.response.as_dict(),
            "response_by_priority": {k: v.as_dict() for k, v in self.response_by_priority.items()},
            "resolution": self.resolution.as_dict(),
            "resolution_by_priority": {
                k: v.as_dict() for k, v in self.resolution_by_priority.items()
            },
            "nonconformities": {k: dict(v) for k, v in self.nonconformities.items()},
            "nonconformities_total": self.nonconformities_total,
            "nonconformities_closed": self.nonconformities_closed,
            "nonconformities_open_past_deadline": self.nonconformities_open_past_deadline,
        }


def _compliance(
    rows: list[tuple[str, bool | None]],
) -> tuple[Ratio, dict[str, Ratio]]:
    keys = list(PRIORITIES) + sorted({p for p, _ in rows} - set(PRIORITIES))
    counts = {k: [0, 0] for k in keys}
    for priority, met in rows:
        if met is None:
            continue
        counts[priority][1] += 1
        counts[priority][0] += int(met)
    overall = Ratio(sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()))
    return overall, {k: Ratio(c[0], c[1]) for k, c in counts.items()}


def _scores(policy: Policy, values: list[float | None]) -> tuple[Ratio, float | None]:
    ok, scored = policy.csat_share(values)
    return Ratio(ok, scored), mean_score(v for v in values if v is not None)


def monthly_indicators(
    month: str,
    rows: Iterable[tuple[str, Evaluation]],
    nonconformities: Iterable[NonconformityState],
    now: datetime,
    *,
    policy: Policy,
) -> MonthlyIndicators:
    """Aggregate the month's evaluations into indicators.

    Args:
        month: ``YYYY-MM``.
        rows: (priority, evaluation) pairs; other months and cancelled ones are skipped.
        nonconformities: The nonconformities of the month's incidents.
        now: The instant "open past deadline" is judged at (aware).
        policy: The policy the rows were evaluated under (its CSAT threshold).

    Returns:
        The indicators.
    """
    parse_month(month)
    kept = [(p, e) for p, e in rows if e.month == month and not e.cancelled]
    verdicts = [e.callback_verdict for _, e in kept]
    judged = sum(1 for v in verdicts if v not in _NOT_JUDGED)
    untracked = sum(1 for v in verdicts if v == CallbackVerdict.UNTRACKED)
    covered = sum(1 for v in verdicts if v in _COVERED)
    on_time = sum(1 for v in verdicts if v == CallbackVerdict.ON_TIME)
    answered = [e.confirmed for _, e in kept if e.confirmed is not None]
    csat_cb, mean_cb = _scores(policy, [e.callback_score for _, e in kept])
    csat_sv, mean_sv = _scores(policy, [e.survey_score for _, e in kept])
    response, response_by = _compliance([(p, e.response_met) for p, e in kept])
    resolution, resolution_by = _compliance([(p, e.resolution_met) for p, e in kept])

    by_rule: dict[str, dict[str, int]] = {r: {MAJOR: 0, MINOR: 0} for r in RULES}
    total = closed = overdue = 0
    for nc in sorted(nonconformities, key=lambda n: n.rule):
        by_rule.setdefault(nc.rule, {MAJOR: 0, MINOR: 0})
        by_rule[nc.rule][nc.severity] = by_rule[nc.rule].get(nc.severity, 0) + 1
        total += 1
        if nc.closed:
            closed += 1
        elif nc.deadline < now:
            overdue += 1
    ordered = {r: by_rule[r] for r in RULES}
    ordered.update({r: by_rule[r] for r in sorted(set(by_rule) - set(RULES))})

    return MonthlyIndicators(
        month=month,
        resolved=len(kept),
        untracked=untracked,
        callback_coverage=Ratio(covered, judged),
        callback_on_time=Ratio(on_time, judged),
        confirmed_resolution=Ratio(sum(1 for c in answered if c), len(answered)),
        csat={"callback": csat_cb, "survey": csat_sv},
        mean_score={"callback": mean_cb, "survey": mean_sv},
        response=response,
        response_by_priority=response_by,
        resolution=resolution,
        resolution_by_priority=resolution_by,
        nonconformities=ordered,
        nonconformities_total=total,
        nonconformities_closed=closed,
        nonconformities_open_past_deadline=overdue,
    )
