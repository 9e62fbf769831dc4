"""Twilio units: event → outcome mapping, dates, phone numbers, options, REST errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx

import mappings
from connectors.twilio import TaskRouterChannel
from connectors.twilio.events import (
    OutcomeMapping,
    rest_event_outcomes,
    studio_callback_outcomes,
    studio_context_outcomes,
    taskrouter_callback_outcomes,
)
from connectors.twilio.phone import to_e164
from connectors.twilio.rest import parse_date
from core.connector import ConnectorContext
from core.errors import ConfigError, FatalError, InputError
from core.mapping import merge_mapping
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, WORKFLOW_SID, WORKSPACE_SID

MAPPING = OutcomeMapping.from_mapping(mappings.load("twilio"))
TASK = "WT" + "1" * 32
AT = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)


def callback(event: str, attributes: dict, **extra: str) -> dict[str, str]:
    return {
        "Sid": "EV" + "9" * 32,
        "EventType": event,
        "AccountSid": ACCOUNT_SID,
        "WorkspaceSid": WORKSPACE_SID,
        "ResourceType": "task",
        "ResourceSid": TASK,
        "Timestamp": str(int(AT.timestamp())),
        "TaskSid": TASK,
        "TaskAttributes": json.dumps(attributes, ensure_ascii=False),
        "TaskAssignmentStatus": "completed",
        "WorkerName": "王芳",
        **extra,
    }


BASE = {"qloop_key": "callback:7:1", "qloop_token": "tok-7", "incident_key": "SBX-7"}


def test_completed_task_with_one_attempt_is_one_callback_attempt():
    recorded = {"reached": "yes", "confirmed": "是", "score": "4", "comment": "很好",
                "at": "2026-11-20T10:05:00+08:00"}  # fmt: skip
    attrs = {**BASE, "callback_outcome": recorded}
    [out] = taskrouter_callback_outcomes(MAPPING, callback("task.completed", attrs), WORKSPACE_SID)
    assert out.provider_event_id == f"{TASK}#1"
    assert out.kind == "callback_attempt"
    assert (out.reached, out.confirmed, out.score, out.scale) == (True, True, 4.0, (1.0, 5.0))
    assert (
        out.comment == "很好" and out.agent == "王芳"
    )  # worker name when the agent is not recorded
    assert out.correlation_token == "tok-7" and out.provider_ref == TASK
    assert out.occurred_at == datetime(2026, 11, 20, 2, 5, tzinfo=UTC)
    assert out.raw["event_sid"] == "EV" + "9" * 32 and out.raw["via"] == "webhook"


def test_attempt_list_gives_one_outcome_per_attempt_in_order():
    attrs = {**BASE, "callback_outcome": {"attempts": [
        {"reached": False, "at": "2026-11-20T01:00:00Z", "agent": "李雷"},
        {"reached": "no_answer", "at": 1795653600},
        {"reached": True, "confirmed": "no", "score": 2, "at": "Fri, 20 Nov 2026 03:00:00 +0000"},
    ]}}  # fmt: skip
    outs = taskrouter_callback_outcomes(MAPPING, callback("task.canceled", attrs), WORKSPACE_SID)
    assert [o.provider_event_id for o in outs] == [f"{TASK}#1", f"{TASK}#2", f"{TASK}#3"]
    assert [o.reached for o in outs] == [False, False, True]
    assert outs[0].agent == "李雷" and outs[2].confirmed is False and outs[2].score == 2.0
    assert outs[1].occurred_at == datetime.fromtimestamp(1795653600, UTC)
    assert outs[2].occurred_at == datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def test_webhook_and_rest_event_of_one_completion_give_the_same_outcome():
    attrs = {**BASE, "callback_outcome": {"reached": True, "score": 5, "agent": "王芳",
                                          "at": "2026-11-20T02:00:00Z"}}  # fmt: skip
    hook = taskrouter_callback_outcomes(MAPPING, callback("task.completed", attrs), WORKSPACE_SID)
    event = {
        "sid": "EV" + "8" * 32,
        "event_type": "task.completed",
        "event_date": "2026-11-20T02:30:00Z",
        "resource_sid": TASK,
        "event_data": {"task_sid": TASK, "task_attributes": json.dumps(attrs), "worker_name": "X"},
    }
    polled = rest_event_outcomes(MAPPING, event)
    strip = lambda o: (o.provider_event_id, o.occurred_at, o.reached, o.score, o.agent)  # noqa: E731
    assert [strip(o) for o in hook] == [strip(o) for o in polled]


@pytest.mark.parametrize(
    "params",
    [
        callback("reservation.accepted", {**BASE, "callback_outcome": {"reached": True}}),
        callback("task.completed", {"type": "other-app", "callback_outcome": {"reached": True}}),
        callback("task.completed", {**BASE}),  # completed without recording anything
        {**callback("task.completed", {**BASE, "callback_outcome": {"reached": True}}),
         "WorkspaceSid": "WS" + "0" * 32},
    ],
    ids=["not-a-completion", "not-qloop", "nothing-recorded", "other-workspace"],
)  # fmt: skip
def test_events_without_a_qloop_outcome_give_nothing(params):
    assert taskrouter_callback_outcomes(MAPPING, params, WORKSPACE_SID) == []


def test_malformed_task_callbacks_are_input_errors():
    bad = callback("task.completed", BASE)
    with pytest.raises(InputError, match="not JSON"):
        taskrouter_callback_outcomes(MAPPING, {**bad, "TaskAttributes": "{oops"}, WORKSPACE_SID)
    without_time = {k: v for k, v in bad.items() if k != "Timestamp"}
    with pytest.raises(InputError, match="Timestamp"):
        taskrouter_callback_outcomes(MAPPING, without_time, WORKSPACE_SID)


def test_mapping_override_moves_fields_and_scale():
    doc = merge_mapping(
        mappings.load("twilio"),
        {"taskrouter": {"outcome": "result", "fields": {"score": "csat"}, "scale": [0, 10]}},
    )
    mapping = OutcomeMapping.from_mapping(doc)
    attrs = {**BASE, "result": {"reached": 1, "csat": "9", "at": "2026-11-20T01:00:00Z"}}
    [out] = taskrouter_callback_outcomes(mapping, callback("task.completed", attrs), WORKSPACE_SID)
    assert out.score == 9.0 and out.scale == (0.0, 10.0) and out.reached is True
    older = OutcomeMapping.from_mapping(  # "attempt", the older name of "outcome", still works
        merge_mapping(mappings.load("twilio"), {"taskrouter": {"attempt": "result"}})
    )
    [again] = taskrouter_callback_outcomes(older, callback("task.completed", attrs), WORKSPACE_SID)
    assert again.reached is True
    with pytest.raises(ConfigError, match="scale"):
        OutcomeMapping.from_mapping(merge_mapping(doc, {"taskrouter": {"scale": [5, 1]}}))
    with pytest.raises(ConfigError, match="unknown field"):
        OutcomeMapping.from_mapping(merge_mapping(doc, {"studio": {"fields": {"mood": "m"}}}))


def test_studio_callback_and_context_map_to_the_same_survey_answer():
    values = {"execution_sid": "FN1", "qloop_token": "tok-9", "qloop_kind": "survey",
              "score": "8", "comment": "ok"}  # fmt: skip
    [hook] = studio_callback_outcomes(MAPPING, values, AT)
    execution = {"sid": "FN1", "status": "ended", "date_updated": "2026-11-20T02:30:00Z"}
    context = {"flow": {"data": {"qloop_token": "tok-9", "qloop_kind": "survey"},
                        "variables": {"score": "8", "comment": "ok"}}}  # fmt: skip
    [polled] = studio_context_outcomes(MAPPING, execution, context)
    for out in (hook, polled):
        assert (out.provider_event_id, out.kind, out.score, out.scale) == (
            "FN1", "survey_answer", 8.0, (0.0, 10.0),
        )  # fmt: skip
        assert out.correlation_token == "tok-9" and out.reached is None
    with pytest.raises(InputError, match="execution_sid"):
        studio_callback_outcomes(MAPPING, {"score": "8"}, AT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 25 Nov 2026 10:00:00 +0000", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 18:00:00 +0800", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T18:00:00.123+08:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("1795600800", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        (1795600800000, datetime(2026, 11, 25, 10, tzinfo=UTC)),
    ],
)
def test_parse_date_reads_rfc2822_iso_and_epoch(text, expected):
    value = parse_date(text)
    assert value == expected and value.tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-25T10:00:00", "Wed, 25 Nov 2026"])
def test_parse_date_refuses_other_text(text):
    with pytest.raises(InputError):
        parse_date(text, "date_updated")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+8613812345678", "+8613812345678"),
        ("138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("0086 138 1234 5678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("(010) 6552 1234", "+861065521234"),
        ("0755-8765-4321", "+8675587654321"),
        ("+86 (0)10 6552 1234", "+861065521234"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("12345", None),
        ("call me", None),
        (None, None),
    ],
)
def test_to_e164_normalises_chinese_and_international_numbers(raw, e164):
    assert to_e164(raw) == e164


OPTIONS = {
    "account_sid": ACCOUNT_SID,
    "auth_token": AUTH_TOKEN,
    "workspace_sid": WORKSPACE_SID,
    "workflow_sid": WORKFLOW_SID,
    "base_url": "https://taskrouter.test",
}


def test_options_are_validated_without_showing_secrets(tmp_path: Path):
    ctx = ConnectorContext(state_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        TaskRouterChannel("cc", {**OPTIONS, "auth_token": "", "workspace_sid": "nope"}, ctx)
    text = str(info.value)
    assert "channels.cc.workspace_sid" in text and "channels.cc.auth_token" in text
    with pytest.raises(ConfigError, match="api_key_sid"):
        TaskRouterChannel("cc", {k: v for k, v in OPTIONS.items() if k != "auth_token"}, ctx)


@respx.mock
def test_twilio_error_json_becomes_a_fatal_error_with_code_and_message(tmp_path: Path):
    respx.get(url__regex=r"https://taskrouter\.test/v1/Workspaces/.*/Tasks.*").mock(
        return_value=httpx.Response(
            401,
            json={"code": 20003, "message": "Authenticate", "status": 401,
                  "more_info": "https://www.twilio.com/docs/errors/20003"},
        )
    )  # fmt: skip
    channel = TaskRouterChannel("cc", OPTIONS, ConnectorContext(state_dir=tmp_path))
    with pytest.raises(FatalError, match="Twilio error 20003: Authenticate") as info:
        channel.lookup("callback:1:1")
    assert AUTH_TOKEN not in str(info.value)


@respx.mock
def test_429_with_retry_after_is_retried_in_call(tmp_path: Path):
    slept: list[float] = []
    route = respx.get(url__regex=r"https://taskrouter\.test/v1/Workspaces/.*/Tasks.*").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"},
                           json={"code": 20429, "message": "Too Many Requests", "status": 429}),
            httpx.Response(200, json={"tasks": [], "meta": {"next_page_url": None}}),
        ]
    )  # fmt: skip
    ctx = ConnectorContext(state_dir=tmp_path, sleep=slept.append)
    assert TaskRouterChannel("cc", OPTIONS, ctx).lookup("callback:1:1") is None
    assert route.call_count == 2 and slept == [3.0]


def test_attempt_list_and_wrap_up_combine_and_an_undated_attempt_is_an_error():
    attempts = [
        {"at": "2026-11-19T01:00:00Z", "reached": False, "agent": "李雷"},
        {"at": "2026-11-19T02:00:00Z", "reached": True, "agent": "王芳"},
        {"at": "2026-11-19T03:00:00Z", "reached": False},
    ]
    wrapup = {"confirmed": "是", "score": "3", "comment": "还行"}
    attrs = {**BASE, "callback_outcome": {"attempts": attempts, **wrapup}}
    outs = taskrouter_callback_outcomes(MAPPING, callback("task.completed", attrs), WORKSPACE_SID)
    assert [(o.reached, o.confirmed, o.score, o.comment) for o in outs] == [
        (False, None, None, None),
        (True, True, 3.0, "还行"),  # the wrap-up belongs to the call that reached the customer
        (False, None, None, None),
    ]
    assert [o.occurred_at.hour for o in outs] == [1, 2, 3]  # never the event's time (02:30)
    undated = {**BASE, "callback_outcome": {"attempts": [attempts[0], {"reached": False}]}}
    with pytest.raises(InputError, match=r"callback_outcome\.attempts\[1\]\.at") as err:
        taskrouter_callback_outcomes(MAPPING, callback("task.completed", undated), WORKSPACE_SID)
    assert err.value.field == "callback_outcome.attempts[1].at"  # type: ignore[attr-defined]
    single = {**BASE, "callback_outcome": {"reached": True, "score": 5}}
    with pytest.raises(InputError) as err:
        taskrouter_callback_outcomes(MAPPING, callback("task.completed", single), WORKSPACE_SID)
    assert err.value.field == "callback_outcome.at"  # type: ignore[attr-defined]
