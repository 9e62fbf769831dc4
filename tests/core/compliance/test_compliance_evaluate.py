"""evaluate_incident(): response/resolution times, reopen, cancel, close, month (CN holidays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.calendar import BusinessCalendar
from core.compliance import IncidentFacts, Policy, evaluate_incident
from core.errors import InputError
from core.records import Category, StatusChange
from core.timeutil import parse_duration

H = 3600
SH = ZoneInfo("Asia/Shanghai")
OFFICE = {d: [(9 * H, 12 * H), (13 * H, 18 * H)] for d in range(5)}
CAL = BusinessCalendar("cn-office", "Asia/Shanghai", OFFICE, country="CN")
POLICY = Policy(
    name="default",
    calendar=CAL,
    response_targets={
        p: parse_duration(t) for p, t in {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"}.items()
    },
    resolution_targets={
        p: parse_duration(t) for p, t in {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"}.items()
    },
    version="abc123",
)
NEW, IP, WAIT = Category.NEW, Category.IN_PROGRESS, Category.WAITING
RES, CLOSED, CANC = Category.RESOLVED, Category.CLOSED, Category.CANCELLED
LATER = datetime(2027, 1, 1, tzinfo=UTC)


def sh(*args: int) -> datetime:
    """A Shanghai wall time as an aware UTC instant."""
    return datetime(*args, tzinfo=SH).astimezone(UTC)  # type: ignore[misc]


def facts(priority: str, created: datetime, *steps: tuple[datetime, Category]) -> IncidentFacts:
    return IncidentFacts(priority, created, [StatusChange(t, c) for t, c in steps])


def national_day(priority: str) -> IncidentFacts:
    return facts(
        priority,
        sh(2026, 9, 30, 17),  # Wednesday 17:00
        (sh(2026, 9, 30, 17), NEW),
        (sh(2026, 9, 30, 17, 20), IP),
        (sh(2026, 10, 8, 10), WAIT),
        (sh(2026, 10, 9, 15), IP),
        (sh(2026, 10, 10, 11), RES),  # adjusted working Saturday
    )


def test_policy_targets_in_business_seconds() -> None:
    assert POLICY.response_target_s("P4") == 28_800  # 1bd = the 8 h standard day
    assert POLICY.resolution_target_s("P3") == 86_400  # 3bd
    assert POLICY.response_target_s("P1") == 900
    assert POLICY.response_target_s("P9") is None


def test_national_day_waiting_pauses() -> None:
    ev = evaluate_incident(national_day("P3"), POLICY, LATER)
    # response: 09-30 17:00 -> 17:20 = 1200 s (target 4 h)
    assert ev.first_response_at == sh(2026, 9, 30, 17, 20)
    assert (ev.response_s, ev.response_target_s, ev.response_met) == (1200, 14_400, True)
    # resolution, new/in_progress only:
    #   new  09-30 17:00-17:20                                   1200
    #   ip   09-30 17:20-18:00 (2400) + 10-01..07 (0) + 10-08 09:00-10:00 (3600) = 6000
    #   wait 10-08 10:00 -> 10-09 15:00 left out (would be 43200)
    #   ip   10-09 15:00-18:00 (10800) + 10-10 09:00-11:00 (7200) = 18000
    assert ev.resolution_s == 1200 + 6000 + 18000 == 25_200
    assert (ev.resolution_target_s, ev.resolution_met) == (86_400, True)
    assert ev.resolved_at == sh(2026, 10, 10, 11)
    assert ev.month == "2026-10"
    assert not ev.cancelled and ev.reopen_count == 0
    assert (ev.policy_name, ev.policy_version, ev.evaluated_at) == ("default", "abc123", LATER)


def test_national_day_breaches_for_p1() -> None:
    ev = evaluate_incident(national_day("P1"), POLICY, LATER)
    assert ev.response_met is False  # 1200 > 900
    assert ev.resolution_met is False  # 25200 > 14400
    rules = {f.rule: f for f in ev.findings}
    assert rules["response_breach"].resolution_at is None
    assert rules["response_breach"].raised_at == sh(2026, 9, 30, 17, 20)
    assert rules["response_breach"].severity == "major"
    assert rules["response_breach"].key == "response_breach@response"
    # 10th working day after 09-30: 10-08, 09, 10, 12, 13, 14, 15, 16, 19, 20 -> 18:00 local
    assert rules["response_breach"].deadline == sh(2026, 10, 20, 18)
    assert rules["resolution_breach"].raised_at == sh(2026, 10, 10, 11)
    assert rules["resolution_breach"].key == "resolution_breach@2026-10-10T03:00:00+00:00"
    # raised on Saturday 10-10 (a working day, not counted): 10-12 .. 10-23 -> 10th is 10-23
    assert rules["resolution_breach"].deadline == sh(2026, 10, 23, 18)
    # the callback was never made: missed, raised at due
    assert rules["callback_missed"].raised_at == sh(2026, 10, 11, 11)


def test_p3_breach_is_minor() -> None:
    slow = facts("P3", sh(2026, 10, 12, 9), (sh(2026, 10, 12, 14), IP))
    # 09:00-12:00 + 13:00-14:00 = 4 h exactly: met (<=)
    assert evaluate_incident(slow, POLICY, LATER).response_met is True
    slower = facts("P3", sh(2026, 10, 12, 9), (sh(2026, 10, 12, 14, 0, 1), IP))
    ev = evaluate_incident(slower, POLICY, LATER)
    assert ev.response_s == 14_401
    assert [(f.rule, f.severity) for f in ev.findings] == [("response_breach", "minor")]


def test_implicit_new_and_never_new() -> None:
    # history starts after created_at: new from created_at
    ev = evaluate_incident(
        facts("P2", sh(2026, 10, 12, 9), (sh(2026, 10, 12, 9, 20), IP)), POLICY, LATER
    )
    assert ev.response_s == 1200 and ev.response_met is True
    # never new: the first entry is the first response
    ev = evaluate_incident(
        facts("P2", sh(2026, 10, 12, 9), (sh(2026, 10, 12, 9), IP)), POLICY, LATER
    )
    assert ev.first_response_at == sh(2026, 10, 12, 9) and ev.response_s == 0
    # empty history: still new, nothing measured
    ev = evaluate_incident(facts("P2", sh(2026, 10, 12, 9)), POLICY, LATER)
    assert ev.first_response_at is None and ev.response_met is None and ev.findings == ()


def test_sorting_and_truncation() -> None:
    created = sh(2026, 10, 12, 9) + timedelta(microseconds=900_000)
    ev = evaluate_incident(
        facts(
            "P3",
            created,
            (sh(2026, 10, 12, 10) + timedelta(microseconds=999_999), RES),
            (sh(2026, 10, 12, 9, 30), IP),
        ),
        POLICY,
        LATER,
    )
    assert ev.first_response_at == sh(2026, 10, 12, 9, 30)
    assert ev.resolved_at == sh(2026, 10, 12, 10)
    assert ev.resolution_s == 3600


def test_reopen_excludes_resolved_time() -> None:
    ev = evaluate_incident(
        facts(
            "P3",
            sh(2026, 10, 12, 9),
            (sh(2026, 10, 12, 9, 30), IP),
            (sh(2026, 10, 12, 10), RES),
            (sh(2026, 10, 12, 14), IP),  # reopen
            (sh(2026, 10, 12, 15), RES),
        ),
        POLICY,
        LATER,
    )
    # new 1800 + ip 1800 + (resolved 10:00-14:00 left out) + ip 14:00-15:00 3600
    assert ev.resolution_s == 7200
    assert ev.reopen_count == 1
    assert [r.at for r in ev.resolutions] == [sh(2026, 10, 12, 10), sh(2026, 10, 12, 15)]
    assert ev.resolutions[0].window_end == sh(2026, 10, 12, 14)
    assert [r.final for r in ev.resolutions] == [False, True]
    assert ev.resolved_at == sh(2026, 10, 12, 15)


def test_currently_reopened_has_no_resolution() -> None:
    ev = evaluate_incident(
        facts(
            "P3",
            sh(2026, 10, 12, 9),
            (sh(2026, 10, 12, 10), RES),
            (sh(2026, 10, 12, 11), CLOSED),
            (sh(2026, 10, 13, 11), WAIT),  # reopen from closed
        ),
        POLICY,
        LATER,
    )
    assert ev.resolved_at is None and ev.month is None and ev.resolution_s is None
    assert ev.callback_verdict is None and ev.reopen_count == 1
    assert len(ev.resolutions) == 1  # resolved -> closed is not a second resolution


def test_closed_without_resolved_counts() -> None:
    ev = evaluate_incident(
        facts(
            "P4", sh(2026, 10, 12, 9), (sh(2026, 10, 12, 10), IP), (sh(2026, 10, 13, 10), CLOSED)
        ),
        POLICY,
        LATER,
    )
    assert ev.resolved_at == sh(2026, 10, 13, 10)
    # new 10-12 09:00-10:00 (1 h) + in progress 10:00-18:00 (7 h) + 10-13 09:00-10:00 (1 h)
    assert ev.resolution_s == 9 * H
    # resolved, reopened, then closed from in_progress: the close is the final resolution
    ev = evaluate_incident(
        facts(
            "P4",
            sh(2026, 10, 12, 9),
            (sh(2026, 10, 12, 10), RES),
            (sh(2026, 10, 12, 11), IP),
            (sh(2026, 10, 12, 14), CLOSED),
        ),
        POLICY,
        LATER,
    )
    assert ev.resolved_at == sh(2026, 10, 12, 14) and ev.reopen_count == 1
    assert ev.resolution_s == H + 2 * H  # 09-10 new, 11-12 and 13-14 in progress


def test_cancelled_keeps_facts_but_no_findings() -> None:
    ev = evaluate_incident(
        facts(
            "P1",
            sh(2026, 10, 12, 9),
            (sh(2026, 10, 12, 11), IP),
            (sh(2026, 10, 12, 17), RES),
            (sh(2026, 10, 12, 18), CANC),
        ),
        POLICY,
        LATER,
    )
    assert ev.cancelled and ev.month is None and ev.findings == ()
    assert ev.response_met is False and ev.resolved_at == sh(2026, 10, 12, 17)


def test_month_in_calendar_zone() -> None:
    # 2026-10-31 17:00 UTC is 2026-11-01 01:00 in Shanghai
    resolved = datetime(2026, 10, 31, 17, tzinfo=UTC)
    ev = evaluate_incident(facts("P3", sh(2026, 10, 30, 9), (resolved, RES)), POLICY, LATER)
    assert ev.month == "2026-11"


def test_naive_and_unknown_category_refused() -> None:
    with pytest.raises(InputError):
        evaluate_incident(facts("P3", datetime(2026, 10, 12, 9)), POLICY, LATER)
    bad = IncidentFacts("P3", sh(2026, 10, 12, 9), [StatusChange(sh(2026, 10, 12, 10), "done")])  # type: ignore[arg-type]
    with pytest.raises(InputError):
        evaluate_incident(bad, POLICY, LATER)
