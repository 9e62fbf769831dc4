"""Evaluate one incident under one policy (SPEC §10).

The rules are spread over :mod:`core.compliance.history` (first response,
resolutions, reopens, windows, resolution time), :mod:`core.compliance.callback`
(callback verdicts, the survey answer that counts) and
:mod:`core.compliance.rules` (findings); each module's docstring lists the
decisions it takes beyond the SPEC. Decisions taken here:

- ``now`` and every input instant are truncated to whole seconds, aware UTC.
- A cancelled incident (last category ``cancelled``) keeps every fact that
  can be measured (times, verdicts, scores) but has no month and no findings.
- ``month`` is ``YYYY-MM`` of ``resolved_at`` in the policy calendar's zone.
- ``met`` is ``time <= target``; None when either is None. A priority without
  a target is not measured.
- ``callback_verdict``, ``callback_due``, ``confirmed`` and ``callback_score``
  are the final resolution's (None without one); ``survey_score`` is the
  score of the survey answer that counts, filled even without a final
  resolution.
- ``next_check_at``: the earliest ``due + 1 s`` of a pending resolution,
  else None (computed for cancelled incidents too).
- ``tracking_from`` (§11) is the tracking start of the incident's source: a
  resolution whose callback due is before it is ``untracked`` (no callback
  or survey finding); None means no limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.compliance.callback import (
    Attempt,
    CallbackVerdict,
    ResolutionOutcome,
    SurveyAnswer,
    assign_attempts,
    judge_callbacks,
    latest_survey,
    scored_answers,
)
from core.compliance.frozen import quick_init
from core.compliance.history import active_seconds, build_timeline
from core.compliance.policy import Policy
from core.compliance.rules import Finding, MeasuredFacts, derive_findings
from core.records import StatusChange
from core.timeutil import month_of, to_utc

__all__ = [
    "Attempt",
    "CallbackVerdict",
    "Evaluation",
    "Finding",
    "IncidentFacts",
    "ResolutionOutcome",
    "SurveyAnswer",
    "evaluate_incident",
]


@quick_init
@dataclass(frozen=True)
class IncidentFacts:
    """Everything the engine needs to know about one incident."""

    priority: str
    created_at: datetime
    history: Sequence[StatusChange]
    attempts: Sequence[Attempt] = ()
    survey_answers: Sequence[SurveyAnswer] = ()


@quick_init
@dataclass(frozen=True)
class Evaluation:
    """The compliance facts and verdicts of one incident under one policy version."""

    policy_name: str
    policy_version: str
    evaluated_at: datetime
    cancelled: bool
    first_response_at: datetime | None
    resolved_at: datetime | None
    month: str | None
    reopen_count: int
    response_s: int | None
    response_target_s: int | None
    response_met: bool | None
    resolution_s: int | None
    resolution_target_s: int | None
    resolution_met: bool | None
    resolutions: tuple[ResolutionOutcome, ...]
    callback_verdict: CallbackVerdict | None
    callback_due: datetime | None
    confirmed: bool | None
    callback_score: float | None
    survey_score: float | None
    findings: tuple[Finding, ...]
    next_check_at: datetime | None


def _met(seconds: int | None, target: int | None) -> bool | None:
    if seconds is None or target is None:
        return None
    return seconds <= target


def evaluate_incident(
    facts: IncidentFacts,
    policy: Policy,
    now: datetime,
    *,
    tracking_from: datetime | None = None,
) -> Evaluation:
    """Evaluate one incident under a policy, as of ``now``.

    Args:
        facts: The incident's priority, creation, status history, callback
            attempts and survey answers.
        policy: The policy to judge against.
        now: The evaluation instant (aware).
        tracking_from: The tracking start of the incident's source (§11), or
            None: resolutions whose callback due is before it are ``untracked``.

    Returns:
        The evaluation.

    Raises:
        InputError: A naive instant or an unknown status category.
    """
    now = to_utc(now)
    cal = policy.calendar
    timeline = build_timeline(facts.created_at, facts.history)
    created = timeline.created_at
    first_response = timeline.first_response_at
    resolved_at = timeline.resolved_at

    response_s = (
        cal.business_seconds(created, first_response) if first_response is not None else None
    )
    response_target = policy.response_target_s(facts.priority)
    resolution_s = active_seconds(timeline, cal, resolved_at) if resolved_at is not None else None
    resolution_target = policy.resolution_target_s(facts.priority)
    response_met = _met(response_s, response_target)
    resolution_met = _met(resolution_s, resolution_target)

    owned = assign_attempts(timeline.resolutions, facts.attempts)
    start = to_utc(tracking_from) if tracking_from is not None else None
    outcomes = judge_callbacks(
        timeline.resolutions, timeline.final_index, owned, policy, now, start
    )
    final = outcomes[timeline.final_index] if timeline.final_index is not None else None
    survey = latest_survey(facts.survey_answers)

    findings: tuple[Finding, ...] = ()
    if not timeline.cancelled:
        measured = MeasuredFacts(
            priority=facts.priority,
            first_response_at=first_response,
            response_s=response_s,
            response_target_s=response_target,
            response_met=response_met,
            resolved_at=resolved_at,
            resolution_s=resolution_s,
            resolution_target_s=resolution_target,
            resolution_met=resolution_met,
        )
        answers = scored_answers(facts.survey_answers)
        findings = derive_findings(policy, measured, outcomes, owned, answers, now)

    pending = [o.due for o in outcomes if o.verdict == CallbackVerdict.PENDING]
    return Evaluation(
        policy_name=policy.name,
        policy_version=policy.version,
        evaluated_at=now,
        cancelled=timeline.cancelled,
        first_response_at=first_response,
        resolved_at=resolved_at,
        month=(
            month_of(resolved_at, cal.tz)
            if resolved_at is not None and not timeline.cancelled
            else None
        ),
        reopen_count=timeline.reopen_count,
        response_s=response_s,
        response_target_s=response_target,
        response_met=response_met,
        resolution_s=resolution_s,
        resolution_target_s=resolution_target,
        resolution_met=resolution_met,
        resolutions=outcomes,
        callback_verdict=final.verdict if final else None,
        callback_due=final.due if final else None,
        confirmed=final.confirmed if final else None,
        callback_score=final.callback_score if final else None,
        survey_score=survey.score if survey else None,
        findings=findings,
        next_check_at=min(pending) + timedelta(seconds=1) if pending else None,
    )
