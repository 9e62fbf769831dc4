"""Errors pickle with their data; time helpers are aware, whole-second, strict."""

from __future__ import annotations

import pickle
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.errors import ConfigError, InputError, Problem, QloopError, RetriableError
from core.timeutil import (
    Duration,
    month_bounds,
    month_of,
    parse_duration,
    parse_instant,
    previous_month,
    to_utc,
)


def test_errors_share_one_root_and_pickle_with_their_data() -> None:
    err = RetriableError("slow down", retry_after=7.5, connector="jira")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, QloopError)
    assert back.retry_after == 7.5
    assert back.connector == "jira"
    assert str(back) == "slow down"


def test_config_error_lists_every_problem_with_its_place() -> None:
    err = ConfigError(
        "bad.yaml: 2 problems",
        problems=[
            Problem("bad.yaml", 3, "sources.a.type", "unknown type"),
            Problem("bad.yaml", None, "", "empty file"),
        ],
    )
    text = str(pickle.loads(pickle.dumps(err)))
    assert "bad.yaml:3: sources.a.type: unknown type" in text
    assert "bad.yaml: empty file" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", nullcontext(Duration(seconds=900))),
        ("1h30m", nullcontext(Duration(seconds=5400))),
        ("2d", nullcontext(Duration(seconds=172_800))),
        ("3bd", nullcontext(Duration(business_days=3))),
        (45, nullcontext(Duration(seconds=45))),
        ("4 hours", pytest.raises(InputError)),
        ("", pytest.raises(InputError)),
        ("-5m", pytest.raises(InputError)),
    ],
    ids=["minutes", "compound", "days", "business-days", "int", "words", "empty", "negative"],
)
def test_parse_duration(text: str | int, expected: nullcontext[Duration]) -> None:
    with expected as value:
        assert parse_duration(text) == value


def test_business_days_refused_where_elapsed_time_is_meant() -> None:
    with pytest.raises(InputError, match="business days"):
        parse_duration("1bd", allow_business_days=False)


def test_bd_turns_into_seconds_of_the_calendar_working_day() -> None:
    assert Duration(seconds=60, business_days=2).total_seconds(8 * 3600) == 60 + 16 * 3600


def test_to_utc_refuses_naive_and_truncates_to_seconds() -> None:
    with pytest.raises(InputError):
        to_utc(datetime(2026, 1, 1, 12, 0))
    value = to_utc(datetime(2026, 1, 1, 20, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=8))))
    assert value == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert value.microsecond == 0


def test_parse_instant_reads_naive_text_in_the_given_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_instant("2026-10-09T09:00:00", shanghai) == datetime(2026, 10, 9, 1, tzinfo=UTC)
    assert parse_instant("2026-10-09T09:00:00Z") == datetime(2026, 10, 9, 9, tzinfo=UTC)
    with pytest.raises(InputError):
        parse_instant("2026-10-09T09:00:00")


def test_month_bounds_and_month_of_use_the_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    start, end = month_bounds("2026-10", shanghai)
    assert start == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 16, tzinfo=UTC)
    # 2026-10-31 17:00 UTC is already November in Shanghai
    assert month_of(datetime(2026, 10, 31, 17, tzinfo=UTC), shanghai) == "2026-11"
    assert previous_month("2026-01") == "2025-12"
    with pytest.raises(InputError):
        month_bounds("2026-13", shanghai)
