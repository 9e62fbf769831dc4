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
from fractions import Fraction
from typing import Any

from core.compliance.evaluate import Evaluation
from core.compliance.policy import MAJOR, MINOR, CallbackVerdict, Policy
from core.compliance.rules import RULES
from core.compliance.scores import exact, round4
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


class IndicatorsFold:
    """The month's indicators folded one evaluation at a time, in constant memory.

    :func:`monthly_indicators` is this fold over its rows and nonconformities;
    feed :meth:`add` and :meth:`add_nc` in any order (the severities of a
    rule keep the order they were first met in), then call :meth:`result`.
    """

    def __init__(self, month: str, now: datetime, *, policy: Policy) -> None:
        parse_month(month)
        self.month, self.now, self.policy = month, now, policy
        self.resolved = self.untracked = self.judged = self.covered = self.on_time = 0
        self.confirmed = self.answered = 0
        self.scores: dict[str, dict[float, int]] = {ch: {} for ch in CHANNELS}
        """Channel → score → how many incidents had it (scores take few values)."""
        self.priorities: set[str] = set()
        self.met: dict[str, dict[str, list[int]]] = {"response": {}, "resolution": {}}
        """Kind → priority → [met, measured]."""
        self.by_rule: dict[str, dict[str, int]] = {r: {MAJOR: 0, MINOR: 0} for r in RULES}
        self.nc_total = self.nc_closed = self.nc_overdue = 0

    def add(self, priority: str, e: Evaluation, times: int = 1) -> None:
        """One incident's evaluation (skipped when of another month or cancelled).

        ``times``: add it as that many incidents with the same facts (a reader
        that tallies identical evaluations adds each kind once).
        """
        if e.month != self.month or e.cancelled:
            return
        self.resolved += times
        v = e.callback_verdict
        if v not in _NOT_JUDGED:
            self.judged += times
        if v == CallbackVerdict.UNTRACKED:
            self.untracked += times
        if v in _COVERED:
            self.covered += times
        if v == CallbackVerdict.ON_TIME:
            self.on_time += times
        if e.confirmed is not None:
            self.answered += times
            self.confirmed += times * int(bool(e.confirmed))
        score = e.callback_score
        if score is not None:
            counts = self.scores["callback"]
            counts[score] = counts.get(score, 0) + times
        score = e.survey_score
        if score is not None:
            counts = self.scores["survey"]
            counts[score] = counts.get(score, 0) + times
        self.priorities.add(priority)
        for kind, met in (("response", e.response_met), ("resolution", e.resolution_met)):
            if met is None:
                continue
            tally = self.met[kind].setdefault(priority, [0, 0])
            tally[1] += times
            tally[0] += times * int(met)

    def add_nc(self, nc: NonconformityState, times: int = 1) -> None:
        """One nonconformity of the month's incidents (``times``: that many alike)."""
        sev = self.by_rule.setdefault(nc.rule, {MAJOR: 0, MINOR: 0})
        sev[nc.severity] = sev.get(nc.severity, 0) + times
        self.nc_total += times
        if nc.closed:
            self.nc_closed += times
        elif nc.deadline < self.now:
            self.nc_overdue += times

    def scored(self, channel: str) -> int:
        """How many incidents have a score of the channel."""
        return sum(self.scores[channel].values())

    def score_sum(self, channel: str) -> Fraction:
        """The exact sum of the channel's scores (each read as the decimal it prints as)."""
        return sum(
            (exact(v) * n for v, n in sorted(self.scores[channel].items())), start=Fraction(0)
        )

    def csat(self, channel: str) -> Ratio:
        """Scores of the channel that are not low over scores given (:meth:`Policy.csat_share`)."""
        counts = self.scores[channel]
        ok = sum(n for v, n in counts.items() if not self.policy.is_low(v))
        return Ratio(ok, sum(counts.values()))

    def mean(self, channel: str) -> float | None:
        """The exact mean of the channel's scores, rounded to 4 decimals; None without one."""
        n = self.scored(channel)
        return round4(self.score_sum(channel) / n) if n else None

    def _compliance(self, kind: str) -> tuple[Ratio, dict[str, Ratio]]:
        keys = list(PRIORITIES) + sorted(self.priorities - set(PRIORITIES))
        counts = self.met[kind]
        by = {k: Ratio(*counts.get(k, (0, 0))) for k in keys}
        overall = Ratio(
            sum(r.numerator for r in by.values()), sum(r.denominator for r in by.values())
        )
        return overall, by

    def result(self) -> MonthlyIndicators:
        """The indicators of what was added so far."""
        response, response_by = self._compliance("response")
        resolution, resolution_by = self._compliance("resolution")
        ordered = {r: dict(self.by_rule[r]) for r in RULES}
        ordered.update({r: dict(self.by_rule[r]) for r in sorted(set(self.by_rule) - set(RULES))})
        return MonthlyIndicators(
            month=self.month,
            resolved=self.resolved,
            untracked=self.untracked,
            callback_coverage=Ratio(self.covered, self.judged),
            callback_on_time=Ratio(self.on_time, self.judged),
            confirmed_resolution=Ratio(self.confirmed, self.answered),
            csat={ch: self.csat(ch) for ch in CHANNELS},
            mean_score={ch: self.mean(ch) for ch in CHANNELS},
            response=response,
            response_by_priority=response_by,
            resolution=resolution,
            resolution_by_priority=resolution_by,
            nonconformities=ordered,
            nonconformities_total=self.nc_total,
            nonconformities_closed=self.nc_closed,
            nonconformities_open_past_deadline=self.nc_overdue,
        )


def monthly_indicators(
    month: str,
    rows: Iterable[tuple[str, Evaluation]],
    nonconformities: Iterable[NonconformityState],
    now: datetime,
    *,
    policy: Policy,
) -> MonthlyIndicators:
    """Aggregate the month's evaluations into indicators (:class:`IndicatorsFold` over them).

    Args:
        month: ``YYYY-MM``.
        rows: (priority, evaluation) pairs; other months and cancelled ones are skipped.
        nonconformities: The nonconformities of the month's incidents.
        now: The instant "open past deadline" is judged at (aware).
        policy: The policy the rows were evaluated under (its CSAT threshold).

    Returns:
        The indicators.
    """
    fold = IndicatorsFold(month, now, policy=policy)
    for priority, e in rows:
        fold.add(priority, e)
    for nc in nonconformities:
        fold.add_nc(nc)
    return fold.result()
