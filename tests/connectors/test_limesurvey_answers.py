"""LimeSurvey answers: base64 JSON exports, answer mapping, server-local dates."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import mappings
from connectors.limesurvey.answers import (
    AnswerMapping,
    Participant,
    decode_export,
    local_time,
    to_outcome,
)
from core.errors import ConfigError, RetriableError

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def b64(doc: Any) -> str:
    return base64.b64encode(json.dumps(doc, ensure_ascii=False).encode()).decode()


def participant(**kw: Any) -> Participant:
    base = dict(
        tid=7, token="q8Zx1Lr0aBcDeF", correlation_token="corr-7", incident="SUP-7",
        email="jane@example.com", name="Jane", completed="2026-10-04 10:12",
    )  # fmt: skip
    return Participant(**{**base, **kw})


def test_decode_export_reads_the_current_document_shape() -> None:
    rows = decode_export(b64({"responses": [{"id": "12", "SAT": "9"}]}), "here")
    assert rows == [{"id": "12", "SAT": "9"}]


def test_decode_export_reads_the_3x_wrapped_rows() -> None:
    rows = decode_export(b64({"responses": [{"12": {"SAT": "4", "token": "t"}}]}), "here")
    assert rows == [{"id": "12", "SAT": "4", "token": "t"}]


def test_decode_export_keeps_unicode_comments() -> None:
    rows = decode_export(b64({"responses": [{"id": "1", "COMMENT": "工程师很专业"}]}), "here")
    assert rows[0]["COMMENT"] == "工程师很专业"


@pytest.mark.parametrize("data", ["%%%not base64%%%", b64("x")[:-3] + "!!", 42], ids=str)
def test_decode_export_refuses_garbage_as_retriable(data: Any) -> None:
    with pytest.raises(RetriableError, match="here"):
        decode_export(data, "here")


def test_default_mapping_reads_a_0_to_10_score_confirmation_and_comment() -> None:
    answers = AnswerMapping.from_mapping(mappings.load("limesurvey"), "channels.ls")
    row = {"id": "12", "submitdate": "2026-10-04 10:12:41", "CONF": "Y", "SAT": "9",
           "COMMENT": " 很好 ", "token": "q8Zx1Lr0aBcDeF"}  # fmt: skip
    out = to_outcome(
        row, participant(), survey_id=246135, answers=answers, zone=SHANGHAI, fallback_time=NOW
    )
    assert out is not None
    assert out.provider_event_id == "246135:12"
    assert out.provider_ref == "246135:7"
    assert out.kind == "survey_answer"
    assert out.correlation_token == "corr-7"
    assert (out.confirmed, out.score, out.scale, out.comment) == (True, 9.0, (0.0, 10.0), "很好")
    # 10:12:41 in Shanghai is 02:12:41 UTC
    assert out.occurred_at == datetime(2026, 10, 4, 2, 12, 41, tzinfo=UTC)
    assert out.raw["response"]["SAT"] == "9"


def test_mapping_translates_answer_codes_and_unknowns() -> None:
    answers = AnswerMapping.from_mapping(
        {
            "answers": {
                "confirmed": {"question": "Q1", "yes_codes": ["A1"], "no_codes": ["A2"]},
                "score": {"question": "Q2", "scale": [1, 5], "values": {"A1": 5, "A5": 1}},
            }
        },
        "channels.ls",
    )
    assert answers.confirmed({"Q1": "A1"}) is True
    assert answers.confirmed({"Q1": "A2"}) is False
    assert answers.confirmed({"Q1": "A3"}) is None
    assert answers.confirmed({"Q1": ""}) is None
    assert answers.score({"Q2": "A1"}) == 5.0
    assert answers.score({"Q2": "A5"}) == 1.0
    assert answers.score({"Q2": "A9"}) is None
    assert answers.score({}) is None
    assert answers.comment({"COMMENT": "x"}) is None  # no comment question configured


def test_zero_is_a_score_not_a_missing_answer() -> None:
    answers = AnswerMapping.from_mapping(mappings.load("limesurvey"), "channels.ls")
    assert answers.score({"SAT": "0"}) == 0.0


def test_incomplete_response_is_no_outcome() -> None:
    answers = AnswerMapping.from_mapping(mappings.load("limesurvey"), "channels.ls")
    row = {"id": "3", "submitdate": None, "SAT": "9"}
    assert (
        to_outcome(row, participant(), survey_id=1, answers=answers, zone=UTC, fallback_time=NOW)
        is None
    )


def test_survey_without_date_stamps_falls_back_to_the_completion_time() -> None:
    answers = AnswerMapping.from_mapping(mappings.load("limesurvey"), "channels.ls")
    row = {"id": "3", "submitdate": "1980-01-01 00:00:00", "SAT": "9"}
    out = to_outcome(row, participant(), survey_id=1, answers=answers, zone=SHANGHAI,
                     fallback_time=NOW)  # fmt: skip
    assert out is not None and out.occurred_at == datetime(2026, 10, 4, 2, 12, tzinfo=UTC)
    out = to_outcome(row, participant(completed="Y"), survey_id=1, answers=answers,
                     zone=SHANGHAI, fallback_time=NOW)  # fmt: skip
    assert out is not None and out.occurred_at == NOW


def test_local_time_handles_dst_zones() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert local_time("2026-07-01 12:00:00", paris) == datetime(2026, 7, 1, 10, tzinfo=UTC)
    assert local_time("2026-12-01 12:00", paris) == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert local_time("N", paris) is None


@pytest.mark.parametrize(
    ("answers", "where"),
    [
        ({"score": {"question": "S", "scale": [5, 1]}}, "score.scale"),
        ({"score": {"question": "S", "scale": [0]}}, "score.scale"),
        ({"score": {"question": "S", "values": {"A1": "high"}}}, "score.values"),
        ({"comment": {"question": 3}}, "comment.question"),
        ({"confirmed": "CONF"}, "answers.confirmed"),
    ],
    ids=["reversed", "short", "values", "question", "section"],
)
def test_bad_answer_mapping_is_a_config_error_naming_the_key(answers: Any, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        AnswerMapping.from_mapping({"answers": answers}, "channels.ls")
