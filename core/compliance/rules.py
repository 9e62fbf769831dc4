"""Nonconformity rules (SPEC §10, R5/R6; §11 tracking start).

Severity, raise instant and deadline are :meth:`Policy.severity`,
:func:`core.compliance.policy.raised_at` and
:meth:`Policy.rectification_deadline`; a low score is :meth:`Policy.is_low`.
Decisions beyond the SPEC, applied exactly:

- At most one finding per rule and resolution (``response_breach`` has no
  resolution); none for a cancelled incident, none from the callback or the
  survey of a superseded or untracked resolution (response and resolution
  breaches are judged for all history); a finding exists only once its
  raise instant is ``<= now``.
- ``callback_missed`` and ``callback_late`` are judged for every resolution;
  ``resolution_breach`` for the final one.
- ``low_satisfaction`` (one per resolution) looks at every scored answer of
  the resolution seen by ``now``: each reached attempt of its window and,
  for the final resolution only, every scored survey answer. It exists when
  one of them is low; it is raised at the earliest low answer, its severity
  is set by the worst score, and it carries the worst answer's ref (ties:
  the earlier answer, then the callback).
- ``callback_late`` and ``not_confirmed`` carry the first reached attempt's
  ref; the others carry none.
- Findings are ordered by raise instant, then key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from core.compliance.callback import Attempt, ResolutionOutcome, SurveyAnswer
from core.compliance.frozen import quick_init
from core.compliance.policy import MAJOR, MINOR, CallbackVerdict, Policy, raised_at

RULES = (
    "response_breach",
    "resolution_breach",
    "callback_missed",
    "callback_late",
    "not_confirmed",
    "low_satisfaction",
)
__all__ = ["MAJOR", "MINOR", "RULES", "Finding", "MeasuredFacts", "derive_findings"]
_NO_CONTACT_FINDINGS = frozenset({CallbackVerdict.SUPERSEDED, CallbackVerdict.UNTRACKED})


@quick_init
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

    @cached_property
    def key(self) -> str:
        """Stable identity: ``rule@<resolution instant, ISO UTC>`` or ``rule@response``."""
        if self.resolution_at is None:
            return f"{self.rule}@response"
        return f"{self.rule}@{self.resolution_at.astimezone(UTC).isoformat()}"


@quick_init
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
    at: datetime,
    detail: str,
    ref: str | None = None,
) -> Finding:
    return Finding(
        rule, resolution_at, severity, at, policy.rectification_deadline(at), detail, ref
    )


def _low_satisfaction(
    policy: Policy,
    outcome: ResolutionOutcome,
    attempts: Sequence[Attempt],
    answers: Sequence[SurveyAnswer],
    now: datetime,
) -> Finding | None:
    if not attempts and not (outcome.final and answers):
        return None  # no answer at all
    # (score, instant, channel order, channel, ref) of every scored answer seen by now
    scored: list[tuple[float, datetime, int, str, str]] = [
        (a.score, a.at, 0, "callback", a.ref)
        for a in attempts
        if a.reached and a.score is not None and a.at <= now
    ]
    if outcome.final:
        scored += [
            (a.score, a.at, 1, "survey", a.ref)
            for a in answers
            if a.score is not None and a.at <= now
        ]
    low = [c for c in scored if policy.is_low(c[0])]
    if not low:
        return None
    at = raised_at("low_satisfaction", low_answers=(c[1] for c in low))
    if at is None:
        return None
    worst = min(low, key=lambda c: (c[0], c[1], c[2]))
    first = min(low, key=lambda c: (c[1], c[2]))
    score, _, _, channel, ref = worst
    severity = policy.severity("low_satisfaction", score=score)
    detail = f"{channel} score {score:g} is below {policy.low_score_below:g}"
    if first is not worst:
        detail += f" (first low answer: {first[3]} score {first[0]:g} at {first[1].isoformat()})"
    return _finding(policy, "low_satisfaction", outcome.at, severity, at, detail, ref)


def _resolution_findings(
    policy: Policy,
    outcome: ResolutionOutcome,
    attempts: Sequence[Attempt],
    answers: Sequence[SurveyAnswer],
    now: datetime,
) -> list[Finding]:
    if outcome.verdict in _NO_CONTACT_FINDINGS:
        return []
    found: list[Finding] = []
    reached = outcome.first_reached_at
    if outcome.verdict == CallbackVerdict.MISSED:
        detail = (
            f"nobody reached by {outcome.due.isoformat()}; "
            f"{outcome.attempts_by_due} attempt(s) by due, "
            f"{policy.callback_min_attempts} needed to excuse it"
        )
        at = raised_at("callback_missed", due=outcome.due)
        assert at is not None
        severity = policy.severity("callback_missed")
        found.append(_finding(policy, "callback_missed", outcome.at, severity, at, detail))
    if outcome.verdict == CallbackVerdict.LATE and reached is not None:
        late_by = int((reached - outcome.due).total_seconds())
        detail = (
            f"first reached at {reached.isoformat()}, {late_by} s after due "
            f"{outcome.due.isoformat()}"
        )
        found.append(
            _finding(
                policy,
                "callback_late",
                outcome.at,
                policy.severity("callback_late"),
                raised_at("callback_late", reached_at=reached) or reached,
                detail,
                outcome.callback_ref,
            )
        )
    if outcome.confirmed is False and reached is not None:
        detail = "the customer did not confirm the resolution"
        found.append(
            _finding(
                policy,
                "not_confirmed",
                outcome.at,
                policy.severity("not_confirmed"),
                raised_at("not_confirmed", reached_at=reached) or reached,
                detail,
                outcome.callback_ref,
            )
        )
    low = _low_satisfaction(policy, outcome, attempts, answers, now)
    if low is not None:
        found.append(low)
    return found


def derive_findings(
    policy: Policy,
    facts: MeasuredFacts,
    outcomes: Sequence[ResolutionOutcome],
    owned: Sequence[Sequence[Attempt]],
    answers: Sequence[SurveyAnswer],
    now: datetime,
) -> tuple[Finding, ...]:
    """Every nonconformity of a (not cancelled) incident raised by ``now``.

    Args:
        policy: The policy judged against.
        facts: Response/resolution measures.
        outcomes: Callback outcome of every resolution.
        owned: The attempts of every resolution's window (same order as ``outcomes``).
        answers: The incident's scored survey answers (they count for the final resolution).
        now: The evaluation instant.

    Returns:
        The findings, ordered by raise instant then key.
    """
    found: list[Finding] = []
    if facts.response_met is False and facts.first_response_at is not None:
        detail = (
            f"response took {facts.response_s} business s, target {facts.response_target_s} s "
            f"({facts.priority})"
        )
        at = raised_at("response_breach", first_response_at=facts.first_response_at)
        assert at is not None
        severity = policy.severity("response_breach", priority=facts.priority)
        found.append(_finding(policy, "response_breach", None, severity, at, detail))
    if facts.resolution_met is False and facts.resolved_at is not None:
        detail = (
            f"resolution took {facts.resolution_s} business s, target "
            f"{facts.resolution_target_s} s ({facts.priority})"
        )
        at = raised_at("resolution_breach", resolved_at=facts.resolved_at)
        assert at is not None
        severity = policy.severity("resolution_breach", priority=facts.priority)
        found.append(_finding(policy, "resolution_breach", facts.resolved_at, severity, at, detail))
    for outcome, attempts in zip(outcomes, owned, strict=True):
        found.extend(_resolution_findings(policy, outcome, attempts, answers, now))
    kept = [f for f in found if f.raised_at <= now]
    if len(kept) > 1:
        kept.sort(key=lambda f: (f.raised_at, f.key))
    return tuple(kept)
