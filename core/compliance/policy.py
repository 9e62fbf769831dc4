"""The policy: every SPEC §10 rule, each in one place, with its defaults written once.

A :class:`Policy` is what the configuration builds (``policies:`` in the YAML,
see :mod:`core.conf.model`) and what the engine, the planner and the sampler
consume. Its fields carry the SPEC defaults (the only place they are
written); a configuration overrides only what it names. Each rule is one
method or function here whose docstring quotes the SPEC sentence it
implements:

===========================  ==========================================
rule                         where
===========================  ==========================================
callback due                 :meth:`Policy.callback_due`
callback verdict             :meth:`Policy.callback_verdict`
low score                    :meth:`Policy.is_low`
CSAT share                   :meth:`Policy.csat_share`
severity                     :meth:`Policy.severity`
raised at                    :func:`raised_at`
rectification deadline       :meth:`Policy.rectification_deadline`
sample size per stratum      :func:`stratum_sample_size`
===========================  ==========================================

``version`` tells policy configurations apart (the config sets it to a hash
of the effective policy and its calendar, so any change of a rule changes
it); it is copied onto every evaluation so results can be recomputed per
version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from core.calendar import BusinessCalendar
from core.errors import ConfigError, InputError
from core.timeutil import Duration, parse_duration

MAJOR, MINOR = "major", "minor"


class CallbackVerdict(StrEnum):
    """The callback verdict of one resolution (SPEC §10 "Callback (R1)", §11 tracking start)."""

    ON_TIME = "on_time"
    LATE = "late"
    UNREACHED_OK = "unreached_ok"
    MISSED = "missed"
    PENDING = "pending"
    SUPERSEDED = "superseded"
    UNTRACKED = "untracked"


def _targets(spec: Mapping[str, str]) -> dict[str, Duration]:
    return {p: parse_duration(t) for p, t in spec.items()}


def _default_response() -> dict[str, Duration]:
    return _targets({"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"})


def _default_resolution() -> dict[str, Duration]:
    return _targets({"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"})


@dataclass(frozen=True)
class SampleRule:
    """Survey sampling (SPEC §10 "Survey sampling"): ``rate`` of each stratum, from ``seed``."""

    rate: float = 1.0
    stratify_by: tuple[str, ...] = ("customer", "service")
    seed: str = "qloop"


@dataclass(frozen=True)
class Policy:
    """Targets, thresholds and channels that compliance is judged against (SPEC §10 defaults)."""

    name: str
    calendar: BusinessCalendar
    response_targets: Mapping[str, Duration] = field(default_factory=_default_response)
    resolution_targets: Mapping[str, Duration] = field(default_factory=_default_resolution)
    version: str = "v1"
    callback_channel: str | None = None
    callback_within_s: int = 86_400
    """§10: "due 86,400 s after that resolution's instant (elapsed time)"."""
    callback_min_attempts: int = 3
    """§10: "never reached, but at least 3 attempts at or before due"."""
    survey_channels: tuple[str, ...] = ()
    sample: SampleRule | None = None
    low_score_below: float = 4.0
    """§10: "A score below 4 is low"; CSAT counts the scores that are not low (≥ 4)."""
    major_score_at_most: float = 2.0
    """§10: "major for ... a score of 2 or less"."""
    major_priorities: frozenset[str] = frozenset({"P1", "P2"})
    """§10: "major for a P1/P2 breach"."""
    rectify_working_days: int = 10
    """§10: "the 10th working day strictly after the local date it was raised"."""
    push_to: str = "source"

    def __post_init__(self) -> None:
        problems = []
        if self.callback_within_s < 0:
            problems.append(f"callback_within_s must be >= 0, got {self.callback_within_s}")
        if self.callback_min_attempts < 1:
            problems.append(f"callback_min_attempts must be >= 1, got {self.callback_min_attempts}")
        if self.rectify_working_days < 1:
            problems.append(f"rectify_working_days must be >= 1, got {self.rectify_working_days}")
        if self.major_score_at_most >= self.low_score_below:
            problems.append(
                f"major_score_at_most ({self.major_score_at_most:g}) must be below "
                f"low_score_below ({self.low_score_below:g})"
            )
        for label, targets in (
            ("response", self.response_targets),
            ("resolution", self.resolution_targets),
        ):
            for priority, target in targets.items():
                if not isinstance(target, Duration):
                    problems.append(f"{label} target for {priority} is not a Duration: {target!r}")
        if problems:
            msg = f"policy {self.name}: " + "; ".join(problems)
            raise ConfigError(msg)

    # --- targets -----------------------------------------------------------------------

    def _target(self, targets: Mapping[str, Duration], priority: str) -> int | None:
        target = targets.get(priority)
        if target is None:
            return None
        return target.total_seconds(self.calendar.standard_day_seconds)

    def response_target_s(self, priority: str) -> int | None:
        """Response target in business seconds (``bd`` = the calendar's standard day), or None."""
        return self._target(self.response_targets, priority)

    def resolution_target_s(self, priority: str) -> int | None:
        """Resolution target in business seconds (``bd`` = the calendar's standard day), or None."""
        return self._target(self.resolution_targets, priority)

    # --- callback ----------------------------------------------------------------------

    def callback_due(self, resolution_at: datetime) -> datetime:
        """§10 Callback (R1): "due 86,400 s after that resolution's instant (elapsed time,
        whatever the clocks do)" — ``callback_within_s`` elapsed seconds after it.
        """
        return resolution_at + timedelta(seconds=self.callback_within_s)

    def callback_verdict(
        self,
        *,
        due: datetime,
        first_reached_at: datetime | None,
        window_end: datetime | None,
        attempts_by_due: int,
        as_of: datetime,
        tracking_from: datetime | None = None,
    ) -> CallbackVerdict:
        """The callback verdict of one resolution; the first rule that applies wins.

        §11: "qloop never phones or surveys a customer about a resolution whose
        callback due is before [tracking_from]; such resolutions get the callback
        verdict ``untracked``". §10: "``on_time`` (first reached attempt at or before
        due), ``late`` (reached only after due), ``unreached_ok`` (never reached, but
        at least 3 attempts at or before due), ``missed`` (otherwise, once due has
        passed), ``pending`` (before due, not yet reached), ``superseded`` (reopened
        before due with nobody reached: no verdict, no nonconformity)".

        Args:
            due: The resolution's callback due (:meth:`callback_due`).
            first_reached_at: The first reached attempt in its window, or None.
            window_end: The next reopen, or None for the last window.
            attempts_by_due: Attempts in its window at or before due.
            as_of: The evaluation instant.
            tracking_from: The source's tracking start, or None (no limit).

        Returns:
            ``untracked`` when ``due < tracking_from``; else ``on_time`` when first
            reached at or before due; ``superseded`` when the window ends strictly
            before due; ``late`` when reached after due; ``unreached_ok`` with
            ``callback_min_attempts`` attempts by due; ``missed`` once ``as_of > due``;
            else ``pending``.
        """
        if tracking_from is not None and due < tracking_from:
            return CallbackVerdict.UNTRACKED
        if first_reached_at is not None and first_reached_at <= due:
            return CallbackVerdict.ON_TIME
        if window_end is not None and window_end < due:
            return CallbackVerdict.SUPERSEDED
        if first_reached_at is not None:
            return CallbackVerdict.LATE
        if attempts_by_due >= self.callback_min_attempts:
            return CallbackVerdict.UNREACHED_OK
        return CallbackVerdict.MISSED if as_of > due else CallbackVerdict.PENDING

    # --- satisfaction ------------------------------------------------------------------

    def is_low(self, score: float) -> bool:
        """§10 Satisfaction: "A score below 4 is low" (``< low_score_below``, normalised 1–5)."""
        return score < self.low_score_below

    def csat_share(self, scores: Iterable[float | None]) -> tuple[int, int]:
        """§10 indicators: "CSAT (scores ≥ 4 over scored)" — scores that are not low.

        Returns:
            (scores not :meth:`is_low`, scores given); None scores are not counted.
        """
        scored = [s for s in scores if s is not None]
        return sum(1 for s in scored if not self.is_low(s)), len(scored)

    # --- nonconformities ---------------------------------------------------------------

    def severity(self, rule: str, *, priority: str = "", score: float | None = None) -> str:
        """§10: "Severity: major for a P1/P2 breach, a ``not_confirmed``, or a score of 2
        or less; minor otherwise."

        Args:
            rule: The nonconformity rule.
            priority: The incident's priority (breaches).
            score: The worst score (``low_satisfaction``).

        Returns:
            ``major`` or ``minor``.
        """
        if rule in ("response_breach", "resolution_breach"):
            return MAJOR if priority in self.major_priorities else MINOR
        if rule == "not_confirmed":
            return MAJOR
        if rule == "low_satisfaction" and score is not None:
            return MAJOR if score <= self.major_score_at_most else MINOR
        return MINOR

    def rectification_deadline(self, raised_at: datetime) -> datetime:
        """§10: "Rectification deadline: the end of the last working span of the 10th
        working day strictly after the local date it was raised" (``rectify_working_days``).
        """
        cal = self.calendar
        return cal.nth_working_day_end(cal.local_date(raised_at), self.rectify_working_days)


def raised_at(
    rule: str,
    *,
    first_response_at: datetime | None = None,
    resolved_at: datetime | None = None,
    due: datetime | None = None,
    reached_at: datetime | None = None,
    low_answers: Iterable[datetime] = (),
) -> datetime | None:
    """§10: "Raised at: response breach → ``first_response_at``; resolution breach →
    ``resolved_at``; missed → the due instant; late, not confirmed → the reached attempt;
    low satisfaction → the earliest low answer (callback attempt or survey answer)."

    Args:
        rule: The nonconformity rule.
        first_response_at: The incident's first response.
        resolved_at: The final resolution's instant.
        due: The resolution's callback due.
        reached_at: The resolution's first reached attempt.
        low_answers: Instants of the resolution's low answers (``low_satisfaction``).

    Returns:
        The instant, or None when the fact it needs is missing.

    Raises:
        InputError: An unknown rule.
    """
    if rule == "response_breach":
        return first_response_at
    if rule == "resolution_breach":
        return resolved_at
    if rule == "callback_missed":
        return due
    if rule in ("callback_late", "not_confirmed"):
        return reached_at
    if rule == "low_satisfaction":
        return min(low_answers, default=None)
    msg = f"unknown nonconformity rule {rule!r}"
    raise InputError(msg)


def round_half_up(x: float | Decimal | Fraction) -> int:
    """Round to the nearest integer, ties away from zero, on exact decimals.

    A ``Decimal`` or ``Fraction`` is rounded exactly. A float is read as the
    decimal it stands for at 15 significant digits (every decimal of up to 15
    digits survives a float round trip, so the binary noise of a product such
    as ``0.29 * 50 == 14.499999999999998`` goes and ``14.5`` is left):
    ``round_half_up(0.29 * 50) == 15``, ``round_half_up(2.5) == 3``.

    Raises:
        InputError: ``x`` is not finite.
    """
    if isinstance(x, Fraction):
        units, rest = divmod(abs(x), 1)
        n = int(units) + (1 if rest >= Fraction(1, 2) else 0)
        return -n if x < 0 else n
    if isinstance(x, float):
        if not math.isfinite(x):
            msg = f"not a finite number: {x!r}"
            raise InputError(msg)
        x = Decimal(f"{x:.15g}")
    if not Decimal(x).is_finite():
        msg = f"not a finite number: {x!r}"
        raise InputError(msg)
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def stratum_sample_size(rate: float, size: int) -> int:
    """§10 Survey sampling: "per stratum ... pick round-half-up of rate × size (exact
    decimal arithmetic: 0.29 × 50 = 14.5 → 15), at least one where the stratum is not
    empty".

    ``rate`` is read as the decimal it prints as (``Decimal(str(rate))``) and
    multiplied exactly; a rate of 0 picks none; never more than ``size``.

    Raises:
        InputError: ``rate`` is outside [0, 1] or ``size`` is negative.
    """
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        msg = f"sampling rate must be within [0, 1], got {rate!r}"
        raise InputError(msg)
    if size < 0:
        msg = f"stratum size must be >= 0, got {size!r}"
        raise InputError(msg)
    k = round_half_up(Decimal(str(rate)) * size)
    if rate > 0 and size > 0:
        k = max(1, k)
    return min(k, size)


def policy_default(name: str) -> Any:
    """The SPEC default of a :class:`Policy` field (e.g. ``callback_within_s`` → 86400).

    Raises:
        KeyError: No such field, or a field without a default.
    """
    for f in fields(Policy):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            break
    raise KeyError(name)
