"""Callback verdicts per resolution (SPEC §10, "Callback (R1)"; §11 tracking start).

The due instant and the verdict rule are :meth:`Policy.callback_due` and
:meth:`Policy.callback_verdict`. Decisions beyond the SPEC, applied exactly:

- Attempts and answers are truncated to whole seconds and sorted by instant,
  stably. An attempt belongs to the resolution whose window ``[at,
  window_end)`` holds it; attempts in no window (before the first
  resolution, or between a reopen and the next resolution) are ignored.
- ``unreached_ok`` is decided as soon as the attempts are made.
- A resolution's outcome (confirmed, score, ref) is its first reached attempt's.
- Survey answers belong to the final resolution only; the one that counts is
  the latest answer that carries a score (by instant, ties: the last given).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from core.compliance.frozen import quick_init
from core.compliance.history import Resolution
from core.compliance.policy import CallbackVerdict, Policy
from core.timeutil import to_utc

__all__ = [
    "Attempt",
    "CallbackVerdict",
    "ResolutionOutcome",
    "SurveyAnswer",
    "assign_attempts",
    "judge_callbacks",
    "latest_survey",
    "scored_answers",
]


@quick_init
@dataclass(frozen=True)
class Attempt:
    """One callback attempt matched to the incident (score already normalised 1–5)."""

    at: datetime
    reached: bool
    confirmed: bool | None = None
    score: float | None = None
    ref: str = ""


@quick_init
@dataclass(frozen=True)
class SurveyAnswer:
    """One survey answer matched to the incident (score already normalised 1–5)."""

    at: datetime
    score: float | None
    ref: str = ""


@quick_init
@dataclass(frozen=True)
class ResolutionOutcome:
    """A resolution and its callback verdict."""

    index: int
    at: datetime
    window_end: datetime | None
    due: datetime
    verdict: CallbackVerdict
    attempts: int
    attempts_by_due: int
    first_reached_at: datetime | None
    confirmed: bool | None
    callback_score: float | None
    callback_ref: str | None
    final: bool


_AT = attrgetter("at")


def _whole_utc(at: datetime) -> bool:
    return at.tzinfo is UTC and not at.microsecond


def _attempt(a: Attempt) -> Attempt:
    """``a`` with its instant whole-second UTC (``a`` itself when it already is)."""
    if type(a) is Attempt and _whole_utc(a.at):
        return a
    return Attempt(to_utc(a.at), a.reached, a.confirmed, a.score, a.ref)


def _answer(a: SurveyAnswer) -> SurveyAnswer:
    """``a`` with its instant whole-second UTC (``a`` itself when it already is)."""
    if type(a) is SurveyAnswer and _whole_utc(a.at):
        return a
    return SurveyAnswer(to_utc(a.at), a.score, a.ref)


def assign_attempts(
    resolutions: Sequence[Resolution], attempts: Sequence[Attempt]
) -> list[list[Attempt]]:
    """The attempts of each resolution's window, oldest first (instants whole-second UTC).

    Args:
        resolutions: The incident's resolutions, oldest first.
        attempts: Callback attempts matched to the incident, any order.

    Returns:
        One list per resolution; attempts in no window are left out.
    """
    starts = [r.at for r in resolutions]
    owned: list[list[Attempt]] = [[] for _ in resolutions]
    for attempt in sorted(map(_attempt, attempts), key=_AT):
        i = bisect_right(starts, attempt.at) - 1
        if i < 0:
            continue
        end = resolutions[i].window_end
        if end is None or attempt.at < end:
            owned[i].append(attempt)
    return owned


def judge_callbacks(
    resolutions: Sequence[Resolution],
    final_index: int | None,
    owned: Sequence[Sequence[Attempt]],
    policy: Policy,
    now: datetime,
    tracking_from: datetime | None = None,
) -> tuple[ResolutionOutcome, ...]:
    """Judge the callback of every resolution.

    Args:
        resolutions: The incident's resolutions, oldest first (whole-second UTC instants).
        final_index: Index of the final resolution, or None.
        owned: Each resolution's attempts (:func:`assign_attempts`).
        policy: The policy (due and verdict rules).
        now: The evaluation instant (whole seconds).
        tracking_from: The source's tracking start (§11), or None.

    Returns:
        One outcome per resolution, in order.
    """
    outcomes = []
    for i, (res, mine) in enumerate(zip(resolutions, owned, strict=True)):
        due = policy.callback_due(res.at)
        reached = next((a for a in mine if a.reached), None)
        by_due = sum(1 for a in mine if a.at <= due)
        verdict = policy.callback_verdict(
            due=due,
            first_reached_at=reached.at if reached else None,
            window_end=res.window_end,
            attempts_by_due=by_due,
            as_of=now,
            tracking_from=tracking_from,
        )
        outcomes.append(
            ResolutionOutcome(
                index=i,
                at=res.at,
                window_end=res.window_end,
                due=due,
                verdict=verdict,
                attempts=len(mine),
                attempts_by_due=by_due,
                first_reached_at=reached.at if reached else None,
                confirmed=reached.confirmed if reached else None,
                callback_score=reached.score if reached else None,
                callback_ref=reached.ref if reached else None,
                final=i == final_index,
            )
        )
    return tuple(outcomes)


def scored_answers(answers: Sequence[SurveyAnswer]) -> list[SurveyAnswer]:
    """The answers that carry a score, instants whole-second UTC, oldest first (stable)."""
    return sorted((_answer(a) for a in answers if a.score is not None), key=_AT)


def latest_survey(answers: Sequence[SurveyAnswer]) -> SurveyAnswer | None:
    """The survey answer that counts: the latest one with a score (ties: the last given).

    Args:
        answers: Survey answers matched to the incident, any order.

    Returns:
        The answer (instant truncated to whole seconds UTC), or None.
    """
    best: SurveyAnswer | None = None
    for answer in answers:
        if answer.score is None:
            continue
        at = to_utc(answer.at)
        if best is None or at >= best.at:
            best = SurveyAnswer(at, answer.score, answer.ref)
    return best
