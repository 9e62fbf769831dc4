"""Callback verdicts per resolution (SPEC §10, "Callback (R1)").

Decisions beyond the SPEC, applied exactly:

- Attempts and answers are truncated to whole seconds and sorted by instant,
  stably. An attempt belongs to the resolution whose window ``[at,
  window_end)`` holds it; attempts in no window (before the first
  resolution, or between a reopen and the next resolution) are ignored.
- ``due`` is the resolution instant plus ``callback_within_s`` elapsed
  seconds. Verdict, first rule that applies:
  1. ``on_time``: the first reached attempt is at or before ``due``;
  2. ``superseded``: the window ends strictly before ``due`` (nobody can
     have been reached then, or rule 1 would apply);
  3. ``late``: reached, only after ``due``;
  4. ``unreached_ok``: never reached and at least ``callback_min_attempts``
     attempts at or before ``due`` (decided as soon as they are made);
  5. ``missed`` once ``now > due``, else ``pending``.
- A resolution's outcome (confirmed, score, ref) is its first reached attempt's.
- Survey answers belong to the final resolution only; the one that counts is
  the latest answer that carries a score (by instant, ties: the last given).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.compliance.history import Resolution
from core.timeutil import to_utc


@dataclass(frozen=True)
class Attempt:
    """One callback attempt matched to the incident (score already normalised 1–5)."""

    at: datetime
    reached: bool
    confirmed: bool | None = None
    score: float | None = None
    ref: str = ""


@dataclass(frozen=True)
class SurveyAnswer:
    """One survey answer matched to the incident (score already normalised 1–5)."""

    at: datetime
    score: float | None
    ref: str = ""


class CallbackVerdict(StrEnum):
    """The callback verdict of one resolution."""

    ON_TIME = "on_time"
    LATE = "late"
    UNREACHED_OK = "unreached_ok"
    MISSED = "missed"
    PENDING = "pending"
    SUPERSEDED = "superseded"


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


def _verdict(
    first_reached: Attempt | None,
    window_end: datetime | None,
    due: datetime,
    attempts_by_due: int,
    min_attempts: int,
    now: datetime,
) -> CallbackVerdict:
    if first_reached is not None and first_reached.at <= due:
        return CallbackVerdict.ON_TIME
    if window_end is not None and window_end < due:
        return CallbackVerdict.SUPERSEDED
    if first_reached is not None:
        return CallbackVerdict.LATE
    if attempts_by_due >= min_attempts:
        return CallbackVerdict.UNREACHED_OK
    return CallbackVerdict.MISSED if now > due else CallbackVerdict.PENDING


def judge_callbacks(
    resolutions: Sequence[Resolution],
    final_index: int | None,
    attempts: Sequence[Attempt],
    within_s: int,
    min_attempts: int,
    now: datetime,
) -> tuple[ResolutionOutcome, ...]:
    """Judge the callback of every resolution.

    Args:
        resolutions: The incident's resolutions, oldest first (whole-second UTC instants).
        final_index: Index of the final resolution, or None.
        attempts: Callback attempts matched to the incident, any order.
        within_s: Seconds from resolution to due.
        min_attempts: Unreached attempts by due that excuse the callback.
        now: The evaluation instant (whole seconds).

    Returns:
        One outcome per resolution, in order.
    """
    starts = [r.at for r in resolutions]
    owned: list[list[Attempt]] = [[] for _ in resolutions]
    for attempt in sorted(
        (Attempt(to_utc(a.at), a.reached, a.confirmed, a.score, a.ref) for a in attempts),
        key=lambda a: a.at,
    ):
        i = bisect_right(starts, attempt.at) - 1
        if i < 0:
            continue
        end = resolutions[i].window_end
        if end is None or attempt.at < end:
            owned[i].append(attempt)
    outcomes = []
    for i, (res, mine) in enumerate(zip(resolutions, owned, strict=True)):
        due = res.at + timedelta(seconds=within_s)
        reached = next((a for a in mine if a.reached), None)
        by_due = sum(1 for a in mine if a.at <= due)
        outcomes.append(
            ResolutionOutcome(
                index=i,
                at=res.at,
                window_end=res.window_end,
                due=due,
                verdict=_verdict(reached, res.window_end, due, by_due, min_attempts, now),
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


def latest_survey(answers: Sequence[SurveyAnswer]) -> SurveyAnswer | None:
    """The survey answer that counts: the latest one with a score.

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
