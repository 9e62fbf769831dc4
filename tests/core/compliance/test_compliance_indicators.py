"""monthly_indicators() on a small hand-built set."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from core.calendar import BusinessCalendar
from core.compliance import (
    CallbackVerdict,
    Evaluation,
    NonconformityState,
    Policy,
    Ratio,
    monthly_indicators,
)

V = CallbackVerdict
CAL = BusinessCalendar("c", "Asia/Shanghai", {d: [(9 * 3600, 18 * 3600)] for d in range(5)})
POLICY = Policy("default", CAL)
NOW = datetime(2026, 11, 15, tzinfo=UTC)
BASE = Evaluation(
    policy_name="default",
    policy_version="v1",
    evaluated_at=NOW,
    cancelled=False,
    first_response_at=None,
    resolved_at=datetime(2026, 10, 12, 2, tzinfo=UTC),
    month="2026-10",
    reopen_count=0,
    response_s=None,
    response_target_s=None,
    response_met=None,
    resolution_s=None,
    resolution_target_s=None,
    resolution_met=None,
    resolutions=(),
    callback_verdict=V.ON_TIME,
    callback_due=None,
    confirmed=None,
    callback_score=None,
    survey_score=None,
    findings=(),
    next_check_at=None,
)


def ev(**kw: object) -> Evaluation:
    return replace(BASE, **kw)  # type: ignore[arg-type]


ROWS = [
    (
        "P1",
        ev(
            callback_verdict=V.ON_TIME,
            confirmed=True,
            callback_score=5.0,
            response_met=True,
            resolution_met=True,
        ),
    ),
    (
        "P1",
        ev(
            callback_verdict=V.LATE,
            confirmed=False,
            callback_score=2.0,
            response_met=False,
            resolution_met=True,
            survey_score=4.0,
        ),
    ),
    (
        "P2",
        ev(
            callback_verdict=V.UNREACHED_OK,
            response_met=True,
            resolution_met=False,
            survey_score=3.4,
        ),
    ),
    ("P3", ev(callback_verdict=V.MISSED, response_met=True)),
    ("P3", ev(callback_verdict=V.PENDING, confirmed=True, callback_score=4.0)),
    ("P4", ev(callback_verdict=V.ON_TIME, confirmed=None, callback_score=None, survey_score=5.0)),
    # left out: another month, a cancelled one, an unresolved one
    ("P1", ev(month="2026-09", callback_verdict=V.MISSED, response_met=False)),
    ("P1", ev(cancelled=True, month=None, callback_verdict=V.MISSED)),
    ("P1", ev(month=None, resolved_at=None, callback_verdict=None)),
]
NCS = [
    NonconformityState("response_breach", "major", False, datetime(2026, 11, 1, tzinfo=UTC)),
    NonconformityState("not_confirmed", "major", True, datetime(2026, 11, 1, tzinfo=UTC)),
    NonconformityState("low_satisfaction", "major", False, datetime(2026, 11, 30, tzinfo=UTC)),
    NonconformityState("callback_missed", "minor", False, NOW),  # deadline == now: not past
    NonconformityState("callback_late", "minor", False, datetime(2026, 11, 2, tzinfo=UTC)),
]


def test_monthly_indicators() -> None:
    m = monthly_indicators("2026-10", ROWS, NCS, NOW, policy=POLICY)
    assert m.resolved == 6 and m.untracked == 0
    # judged = 6 - 1 pending = 5; covered = on_time 2 + late 1 + unreached_ok 1 = 4
    assert m.callback_coverage == Ratio(4, 5)
    assert m.callback_on_time == Ratio(2, 5)
    # confirmed True / confirmed not None: (True, False, True) -> 2/3
    assert m.confirmed_resolution == Ratio(2, 3)
    # callback scores 5, 2, 4 -> 2 of 3 at >= 4; mean 11/3 = 3.6667
    assert m.csat["callback"] == Ratio(2, 3)
    assert m.mean_score["callback"] == 3.6667
    # survey scores 4.0, 3.4, 5.0 -> 2 of 3; mean 12.4/3 = 4.1333
    assert m.csat["survey"] == Ratio(2, 3)
    assert m.mean_score["survey"] == 4.1333
    assert m.response == Ratio(3, 4)
    assert m.response_by_priority == {
        "P1": Ratio(1, 2),
        "P2": Ratio(1, 1),
        "P3": Ratio(1, 1),
        "P4": Ratio(0, 0),
    }
    assert m.resolution == Ratio(2, 3)
    assert m.resolution_by_priority["P2"] == Ratio(0, 1)
    assert m.resolution_by_priority["P4"].rate is None
    assert m.nonconformities["response_breach"] == {"major": 1, "minor": 0}
    assert m.nonconformities["resolution_breach"] == {"major": 0, "minor": 0}
    assert m.nonconformities["callback_missed"] == {"major": 0, "minor": 1}
    assert m.nonconformities_total == 5
    assert m.nonconformities_closed == 1
    # open and past deadline: response_breach (11-01), callback_late (11-02)
    assert m.nonconformities_open_past_deadline == 2


def test_as_dict_is_json() -> None:
    d = monthly_indicators("2026-10", ROWS, NCS, NOW, policy=POLICY).as_dict()
    assert d["callback_coverage"] == {"numerator": 4, "denominator": 5, "rate": 0.8}
    assert d["response_by_priority"]["P4"] == {"numerator": 0, "denominator": 0, "rate": None}
    assert json.loads(json.dumps(d)) == d


def test_empty_month() -> None:
    m = monthly_indicators("2026-12", ROWS, [], NOW, policy=POLICY)
    assert m.resolved == 0
    assert m.callback_coverage.rate is None
    assert m.mean_score == {"callback": None, "survey": None}
    assert set(m.response_by_priority) == {"P1", "P2", "P3", "P4"}
    assert m.nonconformities_total == 0


def test_csat_threshold_follows_the_policy() -> None:
    # satisfaction.low_below: 3 → CSAT counts scores >= 3 (it was fixed at 4 before)
    lenient = replace(POLICY, low_score_below=3.0)
    m = monthly_indicators("2026-10", ROWS, NCS, NOW, policy=lenient)
    assert m.csat["callback"] == Ratio(2, 3)  # 5, 2, 4: 2 is still low
    assert m.csat["survey"] == Ratio(3, 3)  # 4.0, 3.4, 5.0: 3.4 is no longer low
    strict = replace(POLICY, low_score_below=4.5)
    m = monthly_indicators("2026-10", ROWS, NCS, NOW, policy=strict)
    assert (m.csat["callback"], m.csat["survey"]) == (Ratio(1, 3), Ratio(1, 3))
    # the same threshold is the low-score rule's
    assert strict.is_low(4.0) and not lenient.is_low(3.4)


def test_untracked_counted_apart_out_of_coverage_and_on_time() -> None:
    rows = [
        *ROWS,
        ("P3", ev(callback_verdict=V.UNTRACKED, response_met=False, resolution_met=True)),
        ("P4", ev(callback_verdict=V.UNTRACKED, response_met=True)),
    ]
    m = monthly_indicators("2026-10", rows, NCS, NOW, policy=POLICY)
    assert (m.resolved, m.untracked) == (8, 2)
    # coverage and on time as without them: 4/5 and 2/5
    assert (m.callback_coverage, m.callback_on_time) == (Ratio(4, 5), Ratio(2, 5))
    # response and resolution SLAs are judged for all history
    assert m.response == Ratio(4, 6) and m.resolution == Ratio(3, 4)
    assert m.as_dict()["untracked"] == 2
