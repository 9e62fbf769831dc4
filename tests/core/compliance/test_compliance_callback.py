"""Callback verdicts, findings, severities, deadlines and satisfaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.calendar import BusinessCalendar
from core.compliance import (
    Attempt,
    CallbackVerdict,
    IncidentFacts,
    Policy,
    SurveyAnswer,
    evaluate_incident,
    normalise_score,
)
from core.errors import ConfigError, InputError
from core.records import Category, StatusChange
from core.timeutil import Duration

H = 3600
SH = ZoneInfo("Asia/Shanghai")
CAL = BusinessCalendar(
    "cn-office",
    "Asia/Shanghai",
    {d: [(9 * H, 12 * H), (13 * H, 18 * H)] for d in range(5)},
    country="CN",
)
POLICY = Policy(
    name="default",
    calendar=CAL,
    response_targets={p: Duration(business_days=1) for p in ("P1", "P2", "P3", "P4")},
    resolution_targets={p: Duration(business_days=5) for p in ("P1", "P2", "P3", "P4")},
)
V = CallbackVerdict
S = timedelta(seconds=1)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH).astimezone(UTC)  # type: ignore[misc]


CREATED = sh(2026, 10, 12, 9)  # Monday
RESOLVED = sh(2026, 10, 12, 10)  # 02:00 UTC
DUE = sh(2026, 10, 13, 10)  # resolved + 86400 s
LATER = datetime(2027, 1, 1, tzinfo=UTC)


def incident(
    attempts: list[Attempt] = (),  # type: ignore[assignment]
    answers: list[SurveyAnswer] = (),  # type: ignore[assignment]
    extra: list[tuple[datetime, Category]] = (),  # type: ignore[assignment]
    priority: str = "P3",
) -> IncidentFacts:
    steps = [(CREATED, Category.IN_PROGRESS), (RESOLVED, Category.RESOLVED), *extra]
    history = [StatusChange(t, c) for t, c in steps]
    return IncidentFacts(priority, CREATED, history, attempts, answers)


def miss(at: datetime) -> Attempt:
    return Attempt(at=at, reached=False)


def reach(
    at: datetime, confirmed: bool = True, score: float | None = 5.0, ref: str = "r"
) -> Attempt:
    return Attempt(at=at, reached=True, confirmed=confirmed, score=score, ref=ref)


def rules(ev: object) -> dict[str, object]:
    return {f.rule: f for f in ev.findings}  # type: ignore[attr-defined]


def test_on_time_exactly_at_due() -> None:
    ev = evaluate_incident(incident([miss(RESOLVED + H * S), reach(DUE)]), POLICY, LATER)
    assert ev.callback_verdict == V.ON_TIME and ev.callback_due == DUE
    out = ev.resolutions[0]
    assert (out.attempts, out.attempts_by_due, out.first_reached_at) == (2, 2, DUE)
    assert ev.findings == () and ev.confirmed is True and ev.callback_score == 5.0
    assert ev.next_check_at is None


def test_late_one_second_after_due() -> None:
    ev = evaluate_incident(incident([reach(DUE + S, ref="call-9")]), POLICY, LATER)
    assert ev.callback_verdict == V.LATE
    late = rules(ev)["callback_late"]
    assert (late.raised_at, late.severity, late.ref) == (DUE + S, "minor", "call-9")  # type: ignore[attr-defined]
    assert late.key == f"callback_late@{RESOLVED.isoformat()}"  # type: ignore[attr-defined]


def test_unreached_ok_needs_three_attempts_by_due() -> None:
    three = [miss(RESOLVED + k * H * S) for k in (1, 2, 3)]
    ev = evaluate_incident(incident(three), POLICY, LATER)
    assert ev.callback_verdict == V.UNREACHED_OK and ev.findings == ()
    # decided as soon as the third attempt is made, before due
    assert (
        evaluate_incident(incident(three), POLICY, RESOLVED + 4 * H * S).callback_verdict
        == V.UNREACHED_OK
    )
    two = [miss(RESOLVED + H * S), miss(DUE), miss(DUE + S)]  # the third is after due
    ev = evaluate_incident(incident(two), POLICY, LATER)
    assert ev.callback_verdict == V.MISSED
    assert (ev.resolutions[0].attempts, ev.resolutions[0].attempts_by_due) == (3, 2)


def test_pending_then_missed_as_now_moves() -> None:
    facts = incident([miss(RESOLVED + H * S)])
    at_due = evaluate_incident(facts, POLICY, DUE)
    assert at_due.callback_verdict == V.PENDING
    assert at_due.next_check_at == DUE + S
    assert "callback_missed" not in rules(at_due)
    after = evaluate_incident(facts, POLICY, DUE + S)
    assert after.callback_verdict == V.MISSED and after.next_check_at is None
    missed = rules(after)["callback_missed"]
    assert (missed.raised_at, missed.severity, missed.ref) == (DUE, "minor", None)  # type: ignore[attr-defined]
    # raised Tuesday 10-13; 10th working day after is 10-27 (Tuesday), 18:00 local
    assert missed.deadline == sh(2026, 10, 27, 18)  # type: ignore[attr-defined]


def test_superseded_by_reopen_before_due() -> None:
    reopen = [
        (sh(2026, 10, 12, 15), Category.IN_PROGRESS),
        (sh(2026, 10, 13, 11), Category.RESOLVED),
    ]
    attempts = [miss(sh(2026, 10, 12, 11)), reach(sh(2026, 10, 13, 12), score=2.0)]
    ev = evaluate_incident(incident(attempts, extra=reopen), POLICY, LATER)
    first, final = ev.resolutions
    assert first.verdict == V.SUPERSEDED and first.window_end == sh(2026, 10, 12, 15)
    assert (first.attempts, final.attempts) == (1, 1)
    assert final.verdict == V.ON_TIME and final.final
    # no finding for the superseded resolution; a low score on the final one
    assert [(f.rule, f.resolution_at) for f in ev.findings] == [
        ("low_satisfaction", sh(2026, 10, 13, 11))
    ]


def test_reopen_exactly_at_due_is_not_superseded() -> None:
    reopen = [(DUE, Category.IN_PROGRESS), (DUE + H * S, Category.RESOLVED)]
    # the attempt at DUE falls between the reopen and the next resolution: in no window
    attempts = [reach(DUE), reach(DUE + 2 * H * S)]
    ev = evaluate_incident(incident(attempts, extra=reopen), POLICY, LATER)
    first, final = ev.resolutions
    assert first.window_end == DUE and first.attempts == 0
    assert first.verdict == V.MISSED
    assert (final.verdict, final.attempts, final.first_reached_at) == (
        V.ON_TIME,
        1,
        DUE + 2 * H * S,
    )
    assert [f.rule for f in ev.findings] == ["callback_missed"]


def test_attempts_outside_windows_are_ignored() -> None:
    ev = evaluate_incident(incident([reach(RESOLVED - S)]), POLICY, LATER)
    assert ev.resolutions[0].attempts == 0 and ev.callback_verdict == V.MISSED


def test_not_confirmed_is_major_and_late_too() -> None:
    ev = evaluate_incident(
        incident([reach(DUE + H * S, confirmed=False, score=4.0, ref="c1")]), POLICY, LATER
    )
    found = rules(ev)
    assert set(found) == {"callback_late", "not_confirmed"}
    nc = found["not_confirmed"]
    assert (nc.severity, nc.raised_at, nc.ref) == ("major", DUE + H * S, "c1")  # type: ignore[attr-defined]
    assert ev.confirmed is False


@pytest.mark.parametrize(
    ("score", "expected"), [(2.0, "major"), (2.0001, "minor"), (3.9999, "minor"), (4.0, None)]
)
def test_low_score_severity(score: float, expected: str | None) -> None:
    ev = evaluate_incident(incident([reach(RESOLVED + H * S, score=score)]), POLICY, LATER)
    low = rules(ev).get("low_satisfaction")
    assert (low.severity if low else None) == expected  # type: ignore[attr-defined]


def test_low_satisfaction_raised_at_earliest_low_answer_severity_by_worst() -> None:
    # §10: "its severity is set by the worst of that resolution's callback and survey
    # scores, and it is raised at the earliest low answer"
    call = reach(RESOLVED + H * S, score=3.0, ref="call")
    worse_survey = [SurveyAnswer(sh(2026, 10, 14, 9), 1.8, "sv-1")]
    low = rules(evaluate_incident(incident([call], worse_survey), POLICY, LATER))[
        "low_satisfaction"
    ]
    assert (low.raised_at, low.ref, low.severity) == (RESOLVED + H * S, "sv-1", "major")  # type: ignore[attr-defined]
    # raised Monday 10-12 (local): the 10th working day after is Monday 10-26, 18:00
    assert low.deadline == sh(2026, 10, 26, 18)  # type: ignore[attr-defined]
    # tie: the earlier answer (the callback) is the evidence
    tie = [SurveyAnswer(sh(2026, 10, 14, 9), 3.0, "sv-2")]
    low = rules(evaluate_incident(incident([call], tie), POLICY, LATER))["low_satisfaction"]
    assert (low.ref, low.severity, low.raised_at) == ("call", "minor", RESOLVED + H * S)  # type: ignore[attr-defined]
    # every scored answer counts for the rule, a later better one erases nothing; the
    # survey score shown (CSAT) stays the latest scored answer
    later = [
        SurveyAnswer(sh(2026, 10, 14, 9), 1.0, "old"),
        SurveyAnswer(sh(2026, 10, 15, 9), 4.6, "new"),
        SurveyAnswer(sh(2026, 10, 16, 9), None, "blank"),
    ]
    ev = evaluate_incident(incident([call], later), POLICY, LATER)
    assert ev.survey_score == 4.6
    low = rules(ev)["low_satisfaction"]
    assert (low.ref, low.severity, low.raised_at) == ("old", "major", RESOLVED + H * S)  # type: ignore[attr-defined]
    assert len([f for f in ev.findings if f.rule == "low_satisfaction"]) == 1


@pytest.mark.parametrize(("later_score", "severity"), [(2.0, "major"), (2.0001, "minor")])
def test_later_worse_survey_keeps_raised_at_and_raises_severity(
    later_score: float, severity: str
) -> None:
    first = SurveyAnswer(sh(2026, 10, 13, 15), 3.0, "sv-1")
    worse = SurveyAnswer(sh(2026, 10, 20, 11), later_score, "sv-2")
    call = reach(RESOLVED + H * S, score=5.0)
    before = rules(evaluate_incident(incident([call], [first]), POLICY, LATER))["low_satisfaction"]
    after = rules(evaluate_incident(incident([call], [first, worse]), POLICY, LATER))[
        "low_satisfaction"
    ]
    assert (before.severity, before.raised_at) == ("minor", sh(2026, 10, 13, 15))  # type: ignore[attr-defined]
    assert (after.severity, after.raised_at) == (severity, sh(2026, 10, 13, 15))  # type: ignore[attr-defined]
    assert after.key == before.key and after.deadline == before.deadline  # type: ignore[attr-defined]
    # raised Tuesday 10-13: the 10th working day after is Tuesday 10-27, 18:00
    assert after.deadline == sh(2026, 10, 27, 18)  # type: ignore[attr-defined]
    # an answer after the evaluation instant is not seen yet
    early = evaluate_incident(incident([call], [first, worse]), POLICY, sh(2026, 10, 20, 11) - S)
    assert rules(early)["low_satisfaction"].severity == "minor"  # type: ignore[attr-defined]


def test_low_callback_then_low_survey_one_finding_at_the_callback() -> None:
    call = reach(RESOLVED + 2 * H * S, score=2.6, ref="call")
    survey = [SurveyAnswer(sh(2026, 10, 13, 9), 1.4, "sv")]
    ev = evaluate_incident(incident([call], survey), POLICY, LATER)
    [low] = [f for f in ev.findings if f.rule == "low_satisfaction"]
    assert (low.raised_at, low.severity, low.ref) == (RESOLVED + 2 * H * S, "major", "sv")
    assert "first low answer: callback score 2.6" in low.detail


def test_survey_counts_for_final_resolution_only() -> None:
    reopen = [
        (sh(2026, 10, 12, 15), Category.IN_PROGRESS),
        (sh(2026, 10, 12, 16), Category.RESOLVED),
    ]
    first_call = reach(sh(2026, 10, 12, 11), score=3.0, ref="a")
    answer = [SurveyAnswer(sh(2026, 10, 12, 12), 1.0, "sv")]
    ev = evaluate_incident(incident([first_call], answer, extra=reopen), POLICY, LATER)
    lows = [f for f in ev.findings if f.rule == "low_satisfaction"]
    assert [(f.resolution_at, f.ref) for f in lows] == [
        (RESOLVED, "a"),  # first resolution: its callback score only
        (sh(2026, 10, 12, 16), "sv"),  # final resolution: the survey answer
    ]
    assert {f.rule for f in ev.findings} == {"low_satisfaction", "callback_missed"}


def test_findings_wait_for_their_raise_instant() -> None:
    facts = incident([reach(RESOLVED + H * S, confirmed=False, score=1.0)])
    assert evaluate_incident(facts, POLICY, RESOLVED + H * S - S).findings == ()
    assert {f.rule for f in evaluate_incident(facts, POLICY, RESOLVED + H * S).findings} == {
        "not_confirmed",
        "low_satisfaction",
    }


def test_breach_severity_follows_priority() -> None:
    # new from Monday 10-12 09:00 straight to resolved on Tuesday 10-20 09:00:
    # 10-12..10-16 and 10-19 = 6 working days = 172800 s > 1bd (response) and > 5bd (resolution)
    history = [
        StatusChange(CREATED, Category.NEW),
        StatusChange(sh(2026, 10, 20, 9), Category.RESOLVED),
    ]
    for priority, severity in (("P2", "major"), ("P4", "minor")):
        ev = evaluate_incident(IncidentFacts(priority, CREATED, history), POLICY, LATER)
        assert (ev.response_s, ev.resolution_s) == (172_800, 172_800)
        found = rules(ev)
        assert set(found) == {"response_breach", "resolution_breach", "callback_missed"}
        assert found["resolution_breach"].severity == severity  # type: ignore[attr-defined]
        assert found["response_breach"].severity == severity  # type: ignore[attr-defined]
        assert found["callback_missed"].severity == "minor"  # type: ignore[attr-defined]


def test_policy_validation() -> None:
    with pytest.raises(ConfigError):
        Policy("p", CAL, {}, {}, rectify_working_days=0)
    with pytest.raises(ConfigError):
        Policy("p", CAL, {"P1": "4h"}, {})  # type: ignore[dict-item]


def test_normalise_score() -> None:
    assert normalise_score(7, 0, 10) == 3.8  # 1 + 7 x 0.4
    assert normalise_score(0, 0, 10) == 1.0
    assert normalise_score(10, 0, 10) == 5.0
    assert normalise_score(2.5, 0, 10) == 2.0
    assert normalise_score(3, 1, 5) == 3.0
    assert normalise_score(2, 1, 7) == 1.6667  # 1 + 4/6
    for bad in ((11, 0, 10), (-1, 0, 10), (3, 5, 5), (3, 5, 1), (float("nan"), 0, 10)):
        with pytest.raises(InputError):
            normalise_score(*bad)
