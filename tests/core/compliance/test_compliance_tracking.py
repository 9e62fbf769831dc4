"""Tracking start (SPEC §11): resolutions due before it are ``untracked``; hand-checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.calendar import BusinessCalendar
from core.compliance import (
    Attempt,
    CallbackVerdict,
    IncidentFacts,
    Policy,
    SurveyAnswer,
    evaluate_incident,
)
from core.records import Category, StatusChange

H = 3600
S = timedelta(seconds=1)
SH = ZoneInfo("Asia/Shanghai")
CAL = BusinessCalendar(
    "cn-office",
    "Asia/Shanghai",
    {d: [(9 * H, 12 * H), (13 * H, 18 * H)] for d in range(5)},
    country="CN",
)
POLICY = Policy("default", CAL)  # SPEC defaults: P3 response 4h, resolution 3bd, due +86400 s
V = CallbackVerdict
LATER = datetime(2027, 1, 1, tzinfo=UTC)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH).astimezone(UTC)  # type: ignore[misc]


CREATED = sh(2026, 10, 12, 9)  # Monday 09:00
RESOLVED = sh(2026, 10, 12, 10)  # Monday 10:00 local = 02:00 UTC
DUE = sh(2026, 10, 13, 10)  # + 86400 s


def incident(
    *extra: tuple[datetime, Category],
    attempts: tuple[Attempt, ...] = (),
    answers: tuple[SurveyAnswer, ...] = (),
    first: Category = Category.IN_PROGRESS,
) -> IncidentFacts:
    steps = [(CREATED, first), (RESOLVED, Category.RESOLVED), *extra]
    return IncidentFacts("P3", CREATED, [StatusChange(t, c) for t, c in steps], attempts, answers)


def test_boundary_due_equal_to_tracking_start_is_tracked() -> None:
    # due 2026-10-13T02:00:00Z; tracking from that very second: not "before" it
    ev = evaluate_incident(incident(), POLICY, LATER, tracking_from=DUE)
    assert ev.callback_verdict == V.MISSED
    assert [f.rule for f in ev.findings] == ["callback_missed"]


def test_due_one_second_before_tracking_start_is_untracked() -> None:
    ev = evaluate_incident(incident(), POLICY, LATER, tracking_from=DUE + S)
    assert ev.callback_verdict == V.UNTRACKED and ev.callback_due == DUE
    assert ev.findings == () and ev.next_check_at is None
    # without a tracking start (or one far back) the same facts are missed
    assert evaluate_incident(incident(), POLICY, LATER).callback_verdict == V.MISSED
    early = sh(2026, 1, 1, 0)
    assert (
        evaluate_incident(incident(), POLICY, LATER, tracking_from=early).callback_verdict
        == V.MISSED
    )


def test_slas_are_judged_for_untracked_history() -> None:
    # new from Monday 10-12 09:00 straight to resolved Monday 10-19 09:00: 5 working days
    # = 144000 s, both for the response (> 4 h) and the resolution (> 3bd = 86400 s)
    late = sh(2026, 10, 19, 9)
    facts = IncidentFacts(
        "P3",
        CREATED,
        [StatusChange(CREATED, Category.NEW), StatusChange(late, Category.RESOLVED)],
    )
    ev = evaluate_incident(facts, POLICY, LATER, tracking_from=LATER)
    assert ev.callback_verdict == V.UNTRACKED
    assert (ev.response_s, ev.response_met) == (144_000, False)
    assert (ev.resolution_s, ev.resolution_met) == (144_000, False)
    assert {f.rule for f in ev.findings} == {"response_breach", "resolution_breach"}


def test_untracked_raises_no_contact_finding_whatever_the_answers() -> None:
    answers = (SurveyAnswer(sh(2026, 10, 14, 9), 1.0, "sv"),)
    attempts = (Attempt(DUE + H * S, reached=True, confirmed=False, score=1.0, ref="c"),)
    ev = evaluate_incident(
        incident(attempts=attempts, answers=answers), POLICY, LATER, tracking_from=LATER
    )
    assert ev.callback_verdict == V.UNTRACKED
    assert ev.findings == ()  # no late, not_confirmed or low_satisfaction
    # the facts themselves are kept
    assert (ev.confirmed, ev.callback_score, ev.survey_score) == (False, 1.0, 1.0)


def test_reopened_history_first_resolution_untracked_final_tracked() -> None:
    # resolved Mon 10:00 (due Tue 10:00), reopened Wed 09:00, resolved again Wed 11:00
    # (due Thu 11:00); tracking starts Tue 12:00: the first is untracked, the final is not
    reopen = (
        (sh(2026, 10, 14, 9), Category.IN_PROGRESS),
        (sh(2026, 10, 14, 11), Category.RESOLVED),
    )
    start = sh(2026, 10, 13, 12)
    ev = evaluate_incident(incident(*reopen), POLICY, LATER, tracking_from=start)
    first, final = ev.resolutions
    assert (first.verdict, final.verdict) == (V.UNTRACKED, V.MISSED)
    assert final.due == sh(2026, 10, 15, 11) and ev.callback_verdict == V.MISSED
    assert [(f.rule, f.raised_at) for f in ev.findings] == [
        ("callback_missed", sh(2026, 10, 15, 11))
    ]
    # as of Thursday 10:00 the final one is still pending: it is looked at again at due + 1 s
    ev = evaluate_incident(incident(*reopen), POLICY, sh(2026, 10, 15, 10), tracking_from=start)
    assert ev.callback_verdict == V.PENDING and ev.next_check_at == sh(2026, 10, 15, 11) + S


def test_untracked_comes_before_superseded() -> None:
    # reopened before due: superseded when tracked, untracked when due before the start
    reopen = ((sh(2026, 10, 12, 15), Category.IN_PROGRESS),)
    assert (
        evaluate_incident(incident(*reopen), POLICY, LATER).resolutions[0].verdict == V.SUPERSEDED
    )
    ev = evaluate_incident(incident(*reopen), POLICY, LATER, tracking_from=LATER)
    assert ev.resolutions[0].verdict == V.UNTRACKED
