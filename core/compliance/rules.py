"""Nonconformity rules (SPEC §10, R5/R6).

Decisions beyond the SPEC, applied exactly:

- At most one finding per rule and resolution (``response_breach`` has no
  resolution); none for a cancelled incident, none for a superseded
  resolution; a finding exists only once its raise instant is ``<= now``.
- ``callback_missed`` and ``callback_late`` are judged for every resolution;
  ``resolution_breach`` for the final one.
- ``low_satisfaction`` (one per resolution) takes the lowest of the
  resolution's callback score and, for the final resolution only, the survey
  score; a tie goes to the earlier instant, then to the callback. Low means
  ``< low_score_below``; it is raised at the attempt or answer holding that
  score and carries its ref.
- ``callback_late`` and ``not_confirmed`` carry the first reached attempt's
  ref; the others carry none.
- Severity: major for a response/resolution breach of a priority in
  ``major_priorities``, for ``not_confirmed``, and for a low score
  ``<= major_score_at_most``; minor otherwise.
- Deadline: end of the last working span of the ``rectify_working_days``-th
  working day strictly after the local date of the raise instant.
- Findings are ordered by raise instant, then key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.compliance.callback import CallbackVerdict, ResolutionOutcome, SurveyAnswer
from core.compliance.policy import Policy

RULES = (
    "response_breach",
    "resolution_breach",
    "callback_missed",
    "callback_late",
    "not_confirmed",
    "low_satisfaction",
)
MAJOR, MINOR = "major", "minor"


@dataclass(frozen=True)
class Finding:
    """A nonconformity found by the rules."""

    rule: str
    resolution_at: datetime | None
    severity: str
    raised_at: datetime
    deadline: datetime
    detail: str
    ref: str | None = None

    @property
    def key(self) -> str:
        """Stable identity: ``rule@<resolution instant, ISO UTC>`` or ``rule@response``."""
        if self.resolution_at is None:
            return f"{self.rule}@response"
        return f"{self.rule}@{self.resolution_at.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class MeasuredFacts:
    """What the rules need besides the callback outcomes."""

    priority: str
    first_response_at: datetime | None
    response_s: int | None
    response_target_s: int | None
    response_met: bool | None
    resolved_at: datetime | None
    resolution_s: int | None
    resolution_target_s: int | None
    resolution_met: bool | None


def _finding(
    policy: Policy,
    rule: str,
    resolution_at: datetime | None,
    severity: str,
    raised_at: datetime,
    detail: str,
    ref: str | None = None,
) -> Finding:
    cal = policy.calendar
    deadline = cal.nth_working_day_end(cal.local_date(raised_at), policy.rectify_working_days)
    return Finding(rule, resolution_at, severity, raised_at, deadline, detail, ref)


def _low_satisfaction(
    policy: Policy, outcome: ResolutionOutcome, survey: SurveyAnswer | None
) -> Finding | None:
    candidates: list[tuple[float, datetime, int, str, str]] = []
    if outcome.callback_score is not None and outcome.first_reached_at is not None:
        candidates.append(
            (
                outcome.callback_score,
                outcome.first_reached_at,
                0,
                "callback",
                outcome.callback_ref or "",
            )
        )
    if outcome.final and survey is not None and survey.score is not None:
        candidates.append((survey.score, survey.at, 1, "survey", survey.ref))
    if not candidates:
        return None
    score, at, _, channel, ref = min(candidates, key=lambda c: (c[0], c[1], c[2]))
    if score >= policy.low_score_below:
        return None
    severity = MAJOR if score <= policy.major_score_at_most else MINOR
    detail = f"{channel} score {score:g} is below {policy.low_score_below:g}"
    return _finding(policy, "low_satisfaction", outcome.at, severity, at, detail, ref)


def _resolution_findings(
    policy: Policy, outcome: ResolutionOutcome, survey: SurveyAnswer | None
) -> list[Finding]:
    if outcome.verdict == CallbackVerdict.SUPERSEDED:
        return []
    found: list[Finding] = []
    due = outcome.due.isoformat()
    if outcome.verdict == CallbackVerdict.MISSED:
        detail = (
            f"nobody reached by {due}; {outcome.attempts_by_due} attempt(s) by due, "
            f"{policy.callback_min_attempts} needed to excuse it"
        )
        found.append(_finding(policy, "callback_missed", outcome.at, MINOR, outcome.due, detail))
    reached = outcome.first_reached_at
    if outcome.verdict == CallbackVerdict.LATE and reached is not None:
        late_by = int((reached - outcome.due).total_seconds())
        detail = f"first reached at {reached.isoformat()}, {late_by} s after due {due}"
        found.append(
            _finding(
                policy, "callback_late", outcome.at, MINOR, reached, detail, outcome.callback_ref
            )
        )
    if outcome.confirmed is False and reached is not None:
        detail = "the customer did not confirm the resolution"
        found.append(
            _finding(
                policy, "not_confirmed", outcome.at, MAJOR, reached, detail, outcome.callback_ref
            )
        )
    low = _low_satisfaction(policy, outcome, survey)
    if low is not None:
        found.append(low)
    return found


def derive_findings(
    policy: Policy,
    facts: MeasuredFacts,
    outcomes: Sequence[ResolutionOutcome],
    survey: SurveyAnswer | None,
    now: datetime,
) -> tuple[Finding, ...]:
    """Every nonconformity of a (not cancelled) incident raised by ``now``.

    Args:
        policy: The policy judged against.
        facts: Response/resolution measures.
        outcomes: Callback outcome of every resolution.
        survey: The survey answer that counts, or None.
        now: The evaluation instant.

    Returns:
        The findings, ordered by raise instant then key.
    """
    found: list[Finding] = []
    breach = MAJOR if facts.priority in policy.major_priorities else MINOR
    if facts.response_met is False and facts.first_response_at is not None:
        detail = (
            f"response took {facts.response_s} business s, target {facts.response_target_s} s "
            f"({facts.priority})"
        )
        found.append(
            _finding(policy, "response_breach", None, breach, facts.first_response_at, detail)
        )
    if facts.resolution_met is False and facts.resolved_at is not None:
        detail = (
            f"resolution took {facts.resolution_s} business s, target "
            f"{facts.resolution_target_s} s ({facts.priority})"
        )
        found.append(
            _finding(
                policy, "resolution_breach", facts.resolved_at, breach, facts.resolved_at, detail
            )
        )
    for outcome in outcomes:
        found.extend(_resolution_findings(policy, outcome, survey))
    kept = [f for f in found if f.raised_at <= now]
    kept.sort(key=lambda f: (f.raised_at, f.key))
    return tuple(kept)
