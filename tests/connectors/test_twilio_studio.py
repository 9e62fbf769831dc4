"""twilio_studio against the fake Twilio: executions once per key, flow callbacks, polling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

import connectors.twilio  # noqa: F401  (registers the Twilio types)
from connectors.twilio import StudioChannel
from core.connector import ConnectorContext
from core.errors import FatalError, InputError, RetriableError
from core.records import Contact, OutboundMessage
from tests.fakes.server import serve
from tests.fakes.twilio import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    FLOW_SID,
    FROM_NUMBER,
    FakeTwilio,
    sign,
    signed,
)

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
HOOK = "https://qloop.example.com/hooks/twilio/studio"


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[tuple[FakeTwilio, str]]:
    twilio = FakeTwilio(clock=clock)
    with serve(twilio.app) as url:
        yield twilio, url


OPEN: list[StudioChannel] = []


@pytest.fixture(autouse=True)
def _close_channels() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def make(tmp_path: Path, clock: Clock, base_url: str, **extra: object) -> StudioChannel:
    options = {
        "account_sid": ACCOUNT_SID,
        "api_key_sid": API_KEY_SID,
        "api_key_secret": API_KEY_SECRET,
        "auth_token": AUTH_TOKEN,
        "flow_sid": FLOW_SID,
        "from_number": FROM_NUMBER,
        "callback_url": HOOK,
        "base_url": base_url,
        **extra,
    }
    ctx = ConnectorContext(state_dir=tmp_path, clock=clock, sleep=clock.sleep)
    channel = StudioChannel("auto", options, ctx)
    OPEN.append(channel)
    return channel


def message(i: int, kind: str = "survey", phone: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        kind=kind, idempotency_key=f"{kind}:{i}:1", correlation_token=f"tok-{i}",
        source="itsm", incident_external_id=str(i), incident_key=f"SBX-{i}", title="打印机卡纸",
        priority="P3", contact=Contact(name="李娜", phone=phone or f"1390000{i:04d}"),
        resolved_at=NOW - timedelta(hours=5), due_at=NOW + timedelta(hours=19),
    )  # fmt: skip


def test_send_starts_one_execution_with_parameters(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    sent = channel.send(message(1))
    execution = twilio.executions[sent.provider_ref]
    assert execution["contact_channel_address"] == "+8613900000001"
    data = twilio.contexts[sent.provider_ref]["flow"]["data"]
    assert data["qloop_key"] == "survey:1:1" and data["qloop_token"] == "tok-1"
    assert data["qloop_kind"] == "survey" and data["incident_key"] == "SBX-1"
    assert twilio.contexts[sent.provider_ref]["flow"]["channel"]["address"] == FROM_NUMBER


def test_send_after_a_lost_reply_finds_the_execution(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    twilio.lose_replies = 1
    with pytest.raises(RetriableError):
        channel.send(message(2))
    clock.now += timedelta(minutes=5)
    again = channel.send(message(2))
    assert twilio.creates == 1 and list(twilio.executions) == [again.provider_ref]
    assert channel.lookup("survey:2:1") == again
    assert channel.lookup("survey:3:1") is None


def test_a_contact_busy_in_another_execution_is_retried_later(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    channel.send(message(4, "callback", phone="13900000004"))
    with pytest.raises(RetriableError, match="another active execution") as info:
        channel.send(message(5, "survey", phone="13900000004"))
    assert info.value.retry_after == 900.0
    assert twilio.creates == 1


def test_lookup_gives_up_past_its_scan_limit(tmp_path, clock, fake):
    _, url = fake
    channel = make(tmp_path, clock, url, lookup_max_scan=2)
    for i in range(3):
        channel.send(message(10 + i))
    with pytest.raises(NotImplementedError, match="lookup_max_scan"):
        channel.lookup("survey:99:1")


def test_flow_callback_and_polling_give_the_same_outcome(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    sid = channel.send(message(6)).provider_ref
    clock.now += timedelta(hours=1)
    posted = twilio.finish_execution(sid, {"score": 9, "comment": "满意"})
    headers, body = signed(HOOK, posted)
    [hook] = channel.receive(headers, body, "http://10.0.0.7:8000/hooks/twilio/studio")
    polled = [o for batch in channel.collect(None) for o in batch.outcomes]
    assert [o.provider_event_id for o in polled] == [hook.provider_event_id] == [sid]
    assert (polled[0].score, polled[0].comment, polled[0].kind) == (9.0, "满意", "survey_answer")
    assert hook.correlation_token == polled[0].correlation_token == "tok-6"


def test_json_flow_callbacks_are_checked_through_body_sha256(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    sid = channel.send(message(7, "callback")).provider_ref
    body = json.dumps(twilio.finish_execution(sid, {"reached": "yes", "score": 4})).encode()
    hook_url = f"{HOOK}?{urlencode({'bodySHA256': hashlib.sha256(body).hexdigest()})}"
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": sign(AUTH_TOKEN, hook_url)}
    [out] = channel.receive(headers, body, hook_url)
    assert (out.kind, out.reached, out.score, out.scale) == ("callback_attempt", True, 4.0, (1, 5))
    with pytest.raises(InputError):
        channel.receive(headers, body.replace(b"4", b"5"), hook_url)
    with pytest.raises(InputError, match="missing"):
        channel.receive({"Content-Type": "application/json"}, body, hook_url)


def test_collect_moves_its_cursor_and_skips_active_executions(tmp_path, clock, fake):
    twilio, url = fake
    channel = make(tmp_path, clock, url)
    first = channel.send(message(20)).provider_ref
    channel.send(message(21))  # never ends
    clock.now += timedelta(hours=2)
    twilio.finish_execution(first, {"score": 3}, at=NOW + timedelta(hours=1))
    batches = list(channel.collect(None))
    assert [o.provider_event_id for b in batches for o in b.outcomes] == [first]
    cursor = batches[-1].cursor
    assert cursor == "2026-11-20T04:00:00Z"
    clock.now += timedelta(hours=1)  # ended before the cursor less its overlap: not re-read
    assert [o for b in channel.collect(cursor) for o in b.outcomes] == []
    with pytest.raises(InputError, match="cursor"):
        list(channel.collect("not-a-date"))


def test_survey_only_channel_refuses_callbacks_and_unknown_flows(tmp_path, clock, fake):
    _, url = fake
    channel = make(tmp_path, clock, url, kinds=["survey"])
    with pytest.raises(FatalError, match="callback"):
        channel.send(message(30, "callback"))
    other = make(tmp_path, clock, url, flow_sid="FW" + "0" * 32)
    with pytest.raises(FatalError, match="20404"):
        other.send(message(31))
