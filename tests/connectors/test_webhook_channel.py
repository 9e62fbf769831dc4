"""The webhook channel: options, signed sends (retries, lost replies), lookup, receive, poll."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import respx

import mappings
from connectors.webhook import OPTIONS_SCHEMA, WebhookChannel
from connectors.webhook.payloads import schema
from core import registry
from core.connector import Channel, ConnectorContext, WebhookReceiver
from core.errors import ConfigError, FatalError, InputError, RetriableError
from core.records import Contact, OutboundMessage
from tests.fakes.callcentre import CallCentre, Fault
from tests.fakes.server import serve

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
INBOUND = "whsec_" + base64.b64encode(b"i" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
URL = "https://cc.example.test/hooks/tasks"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=int(seconds))


def channel(tmp_path: Path, clock: Clock, **options: Any) -> WebhookChannel:
    opts = {"url": URL, "signing_secret": SECRET, **options}
    ctx = ConnectorContext(
        state_dir=tmp_path, mapping=mappings.load("webhook"), clock=clock, sleep=clock.sleep
    )
    return WebhookChannel("cc", opts, ctx)


def message(kind: str = "callback", key: str = "callback:itsm:1001:2026-10-05T03:00:00+00:00"):
    return OutboundMessage(
        kind=kind,  # type: ignore[arg-type]
        idempotency_key=key,
        correlation_token="tok-abcdefgh-1234",
        source="itsm",
        incident_external_id="1001",
        incident_key="SUP-1001",
        title="打印机无法连接",
        priority="P3",
        contact=Contact("李雷", "+86 138 0013 8000", "li.lei@example.cn"),
        resolved_at=datetime(2026, 10, 5, 11, 0, tzinfo=UTC).astimezone(),
        due_at=datetime(2026, 10, 6, 11, 0, tzinfo=UTC),
    )


def check_signature(request: httpx.Request, secret: str = SECRET) -> tuple[str, int]:
    """Verify like a receiver would, independently of the module under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = request.headers["webhook-id"], int(request.headers["webhook-timestamp"])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + request.content, hashlib.sha256)
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(mac.digest()).decode()
    return msg_id, ts


# -- options and registration -----------------------------------------------------------


def test_registered_with_its_schema_and_mapping() -> None:
    ctype = registry.get("channel", "webhook")
    assert ctype.options_schema is OPTIONS_SCHEMA and ctype.mapping == "webhook"
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)


def test_channel_implements_channel_and_receiver(tmp_path: Path) -> None:
    ch = channel(tmp_path, Clock())
    assert isinstance(ch, Channel) and isinstance(ch, WebhookReceiver)
    assert ch.kinds == {"callback", "survey"}
    ch.close()


def test_bad_options_list_every_problem_without_showing_secrets(tmp_path: Path) -> None:
    ctx = ConnectorContext(state_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        WebhookChannel(
            "cc",
            {"signing_secret": "whsec_!!top-secret!!", "kinds": ["fax"], "colour": 1},
            ctx,
        )
    text = str(info.value)
    assert "channels.cc.signing_secret" in text and "top-secret" not in text
    assert "channels.cc.kinds.0" in text and "'url' is a required property" in text
    assert "colour" in text


def test_callback_channels_need_phones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs phone numbers"):
        channel(tmp_path, Clock(), kinds=["callback"], contact="email")
    ch = channel(tmp_path, Clock(), kinds=["callback"])
    assert ch.can_reach(Contact(phone="138 0013 8000"))
    assert not ch.can_reach(Contact(email="a@b.cn"))
    survey = channel(tmp_path, Clock(), kinds=["survey"])
    assert survey.can_reach(Contact(email="a@b.cn")) and not survey.can_reach(Contact(phone="12"))


# -- send --------------------------------------------------------------------------------


@respx.mock
def test_send_posts_a_signed_task_valid_against_the_published_schema(tmp_path: Path) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(202, json={"ref": "CC-9"}))
    clock = Clock()
    result = channel(tmp_path, clock).send(message())
    assert result.provider_ref == "CC-9"
    request = route.calls.last.request
    msg_id, ts = check_signature(request)
    assert msg_id == "callback:itsm:1001:2026-10-05T03:00:00+00:00"
    assert ts == int(T0.timestamp())
    assert request.headers["content-type"] == "application/json"
    doc = json.loads(request.content)
    jsonschema.validate(doc, schema("task"))
    assert doc["type"] == "qloop.callback.requested"
    data = doc["data"]
    assert (
        data["resolved_at"] == "2026-10-05T11:00:00Z" and data["due_at"] == "2026-10-06T11:00:00Z"
    )
    assert data["incident"]["title"] == "打印机无法连接"
    assert data["answer_scale"] == [1.0, 5.0]


@respx.mock
def test_send_without_a_reference_in_the_reply_uses_the_webhook_id(tmp_path: Path) -> None:
    respx.post(URL).mock(return_value=httpx.Response(204))
    key = "survey:itsm:a.b"
    assert (
        channel(tmp_path, Clock()).send(message("survey", key)).provider_ref == "survey:itsm:a%2Eb"
    )


@respx.mock
def test_send_retries_429_and_5xx_honouring_retry_after_each_attempt_signed_afresh(
    tmp_path: Path,
) -> None:
    route = respx.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503),
            httpx.Response(200, json={"ref": "CC-1"}),
        ]
    )
    clock = Clock()
    assert channel(tmp_path, clock).send(message()).provider_ref == "CC-1"
    assert len(route.calls) == 3 and clock.waits[0] == 7
    stamps = [check_signature(call.request) for call in route.calls]
    assert len({msg_id for msg_id, _ in stamps}) == 1
    assert stamps[1][1] == stamps[0][1] + 7  # the timestamp is the attempt's


@respx.mock
def test_send_gives_up_retriable_after_its_attempts(tmp_path: Path) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(502))
    with pytest.raises(RetriableError, match="HTTP 502"):
        channel(tmp_path, Clock(), attempts=2).send(message())
    assert len(route.calls) == 2


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(400, json={"error": "bad phone"}), "HTTP 400: bad phone"),
        (httpx.Response(410), "HTTP 410"),
        (httpx.Response(308, headers={"location": "https://elsewhere/"}), "redirects"),
    ],
    ids=["400", "410-disabled", "redirect"],
)
@respx.mock
def test_send_refusals_are_fatal_and_hide_the_secret(
    tmp_path: Path, response: httpx.Response, match: str
) -> None:
    route = respx.post(URL).mock(return_value=response)
    with pytest.raises(FatalError, match=match) as info:
        channel(tmp_path, Clock()).send(message())
    assert len(route.calls) == 1
    assert SECRET.removeprefix("whsec_") not in str(info.value)


@respx.mock
def test_send_refuses_other_kinds_and_unreachable_contacts_without_posting(tmp_path: Path) -> None:
    route = respx.post(URL)
    ch = channel(tmp_path, Clock(), kinds=["survey"], contact="email")
    with pytest.raises(FatalError, match="does not take 'callback'"):
        ch.send(message())
    nobody = OutboundMessage(**{**message("survey").__dict__, "contact": Contact("x")})
    with pytest.raises(FatalError, match="no usable email contact for SUP-1001"):
        ch.send(nobody)
    assert not route.called


@pytest.fixture
def centre() -> Iterator[tuple[CallCentre, str]]:
    clock = Clock()
    cc = CallCentre(task_secret=SECRET, outcome_secret=INBOUND, clock=clock)
    with serve(cc.app()) as base:
        yield cc, base


def test_send_retried_after_a_lost_reply_delivers_once_at_a_compliant_receiver(
    tmp_path: Path, centre: tuple[CallCentre, str]
) -> None:
    cc, base = centre
    cc.fail_next(Fault(504, after_store=True))  # stored, then the gateway timed out
    ch = channel(tmp_path, cc.clock, url=f"{base}/tasks")  # type: ignore[arg-type]
    first = ch.send(message())
    again = ch.send(message())  # the outbox resending after a crash
    assert len(cc.deliveries) == 3 and cc.resends == 2
    assert len(cc.tasks) == 1
    assert first.provider_ref == again.provider_ref == "CC-000001"
    assert cc.rejected == []
    ch.close()


def test_the_receiver_refuses_a_task_signed_with_another_secret(
    tmp_path: Path, centre: tuple[CallCentre, str]
) -> None:
    cc, base = centre
    ch = channel(tmp_path, cc.clock, url=f"{base}/tasks", signing_secret=OLD)  # type: ignore[arg-type]
    with pytest.raises(FatalError, match="HTTP 401"):
        ch.send(message())
    assert cc.tasks == {} and cc.rejected == [(401, "bad signature")]
    ch.close()


# -- lookup ------------------------------------------------------------------------------


def test_lookup_without_a_status_endpoint_cannot_say(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError):
        channel(tmp_path, Clock()).lookup("callback:itsm:1")


@pytest.mark.parametrize("token", [None, "poll-token-123456"], ids=["signed-get", "bearer"])
def test_lookup_asks_the_status_endpoint(
    tmp_path: Path, centre: tuple[CallCentre, str], token: str | None
) -> None:
    cc, base = centre
    cc.poll_token = token
    extra = {"poll_token": token} if token else {}
    ch = channel(tmp_path, cc.clock, url=f"{base}/tasks", status_url=f"{base}/tasks", **extra)  # type: ignore[arg-type]
    key = "survey:itsm:工单.7"
    assert ch.lookup(key) is None
    sent = ch.send(message("survey", key))
    found = ch.lookup(key)
    assert found is not None and found.provider_ref == sent.provider_ref == "CC-000001"
    ch.close()


# -- receive -----------------------------------------------------------------------------


def _outcome(**over: Any) -> dict[str, Any]:
    base = {
        "kind": "callback_attempt",
        "occurred_at": "2026-10-05T19:30:00+08:00",
        "correlation_token": "tok-abcdefgh-1234",
        "provider_ref": "CC-000001",
        "contact": {"name": "李雷", "phone": "+86 138 0013 8000"},
        "reached": True,
        "confirmed": True,
        "score": 4,
        "comment": "很好",
        "agent": "王芳",
        "result": "answered",
    }
    return {**base, **over}


def receiver(tmp_path: Path, clock: Clock, **options: Any) -> tuple[WebhookChannel, CallCentre]:
    ch = channel(tmp_path, clock, inbound_secret=INBOUND, **options)
    return ch, CallCentre(task_secret=SECRET, outcome_secret=INBOUND, clock=clock)


def test_receive_maps_one_outcome_keyed_by_its_webhook_id(tmp_path: Path) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    headers, body = cc.signed_outcome({"id": "evt_1", **_outcome()})
    jsonschema.validate(json.loads(body), schema("outcome"))
    (out,) = ch.receive(headers, body, "https://qloop.example/hooks/cc")
    assert out.provider_event_id == "evt_1" and out.kind == "callback_attempt"
    assert out.occurred_at == datetime(2026, 10, 5, 11, 30, tzinfo=UTC)
    assert out.occurred_at.tzinfo is UTC
    assert (out.reached, out.confirmed, out.score, out.scale) == (True, True, 4, (1.0, 5.0))
    assert out.correlation_token == "tok-abcdefgh-1234" and out.provider_ref == "CC-000001"
    assert out.contact == Contact("李雷", "+86 138 0013 8000", None)
    assert out.raw["comment"] == "很好"
    # the same delivery again maps to the same event id: storing it changes nothing
    assert ch.receive(headers, body, "u")[0].provider_event_id == "evt_1"


def test_receive_a_batch_each_outcome_with_its_own_id(tmp_path: Path) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    items = [
        {"id": "a1", **_outcome(reached=False, score=None, confirmed=None)},
        {"id": "a2", **_outcome(kind="survey_answer", score=9, scale=[0, 10])},
    ]
    outs = ch.receive(*cc.signed_batch("batch_77", items), "u")
    assert [o.provider_event_id for o in outs] == ["a1", "a2"]
    assert outs[1].scale == (0.0, 10.0) and outs[0].reached is False


def test_receive_accepts_a_previous_secret_during_rotation(tmp_path: Path) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock, previous_secrets=[OLD])
    headers, body = cc.signed_outcome({"id": "evt_2", **_outcome()}, secret=OLD)
    assert ch.receive(headers, body, "u")[0].provider_event_id == "evt_2"
    plain, _ = receiver(tmp_path, clock)
    with pytest.raises(InputError, match="signature does not match"):
        plain.receive(headers, body, "u")


@pytest.mark.parametrize(
    ("shift", "match"),
    [(timedelta(minutes=-6), "stale"), (timedelta(minutes=6), "stale.*future")],
    ids=["stale", "future"],
)
def test_receive_refuses_deliveries_outside_the_tolerance(
    tmp_path: Path, shift: timedelta, match: str
) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    headers, body = cc.signed_outcome({"id": "evt_3", **_outcome()}, at=T0 + shift)
    with pytest.raises(InputError, match=match):
        ch.receive(headers, body, "u")
    wide, _ = receiver(tmp_path, clock, tolerance="10m")
    assert wide.receive(headers, body, "u")


def test_receive_refuses_forged_and_headerless_deliveries(tmp_path: Path) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    headers, body = cc.signed_outcome({"id": "evt_4", **_outcome()})
    forged = body.replace(b'"score":4', b'"score":1')
    with pytest.raises(InputError, match="signature does not match"):
        ch.receive(headers, forged, "u")
    signed_by_qloop_key = cc.signed_outcome({"id": "evt_4", **_outcome()}, secret=SECRET)
    with pytest.raises(InputError, match="signature does not match"):
        ch.receive(*signed_by_qloop_key, "u")
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(InputError, match=f"missing header {name}"):
            ch.receive(partial, body, "u")


@pytest.mark.parametrize(
    ("doc", "path", "match"),
    [
        (
            {"type": "outcome.reported", "timestamp": "2026-11-20T08:00:00Z",
             "data": _outcome(kind="phone_call")},
            "$.data.kind",
            "'phone_call' is not one of",
        ),
        (
            {"type": "outcome.reported", "timestamp": "2026-11-20T08:00:00Z",
             "data": {k: v for k, v in _outcome().items() if k != "reached"}},
            "$.data",
            "'reached' is a required property",
        ),
        (
            {"type": "outcome.batch", "timestamp": "2026-11-20T08:00:00Z",
             "data": {"outcomes": [{"id": "x", **_outcome()}, _outcome()]}},
            "$.data.outcomes[1]",
            "'id' is a required property",
        ),
        (
            {"type": "outcome.reported", "timestamp": "2026-11-20T08:00:00Z",
             "data": _outcome(occurred_at="2026-10-05 19:30")},
            "$.data.occurred_at",
            "does not match",
        ),
        (
            {"type": "outcome.reported", "timestamp": "2026-11-20T08:00:00Z",
             "data": _outcome(score="four")},
            "$.data.score",
            "is not of type",
        ),
    ],
    ids=["unknown-kind", "callback-without-reached", "batch-item-without-id", "bad-instant",
         "score-not-number"],
)  # fmt: skip
def test_receive_invalid_payload_names_the_json_path(
    tmp_path: Path, doc: dict[str, Any], path: str, match: str
) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    with pytest.raises(InputError, match=match) as info:
        ch.receive(*cc.sign("evt_5", doc), "u")
    assert info.value.field == path  # type: ignore[attr-defined]
    assert path + ":" in str(info.value)


def test_receive_a_body_that_is_not_json(tmp_path: Path) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    headers, _ = cc.sign("evt_6", {})
    body = b"<xml>nope</xml>"
    key = base64.b64decode(INBOUND.removeprefix("whsec_"))
    ts = headers["webhook-timestamp"]
    mac = hmac.new(key, f"evt_6.{ts}.".encode() + body, hashlib.sha256).digest()
    headers["webhook-signature"] = "v1," + base64.b64encode(mac).decode()
    with pytest.raises(InputError, match="not UTF-8 JSON") as info:
        ch.receive(headers, body, "u")
    assert info.value.field == "$"  # type: ignore[attr-defined]


# -- collect -----------------------------------------------------------------------------


def test_collect_without_a_poll_url_yields_nothing(tmp_path: Path) -> None:
    assert list(channel(tmp_path, Clock()).collect(None)) == []


def test_collect_polls_pages_and_resumes_from_the_cursor(
    tmp_path: Path, centre: tuple[CallCentre, str]
) -> None:
    cc, base = centre
    ctx = ConnectorContext(
        state_dir=tmp_path,
        mapping={**mappings.load("webhook"), "poll": {"limit": 2}},
        clock=cc.clock,
    )
    ch = WebhookChannel(
        "cc",
        {"url": f"{base}/tasks", "signing_secret": SECRET, "poll_url": f"{base}/outcomes"},
        ctx,
    )
    for n in range(4):
        ch.send(message("callback", f"callback:itsm:{n}:2026-10-05T03:00:00+00:00"))
    total = len(cc.outcomes)
    assert total >= 4
    batches = list(ch.collect(None))
    assert [len(b.outcomes) for b in batches[:-1]] == [2] * (len(batches) - 1)
    assert sum(len(b.outcomes) for b in batches) == total
    ids = [o.provider_event_id for b in batches for o in b.outcomes]
    assert ids == [o["id"] for o in cc.outcomes]
    assert batches[-1].cursor == str(total)
    assert list(ch.collect(batches[-1].cursor)) == []
    ch.send(message("survey", "survey:itsm:late"))
    more = [o for b in ch.collect(batches[-1].cursor) for o in b.outcomes]
    assert len(more) == len(cc.outcomes) - total
    ch.close()


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"occurred_at": "2026-13-05T19:30:00Z"}, "$.data.occurred_at"),
        ({"scale": [5, 1]}, "$.data.scale"),
    ],
    ids=["impossible-date", "inverted-scale"],
)
def test_receive_values_the_schema_cannot_judge_name_their_path(
    tmp_path: Path, over: dict[str, Any], field: str
) -> None:
    clock = Clock()
    ch, cc = receiver(tmp_path, clock)
    with pytest.raises(InputError) as info:
        ch.receive(*cc.signed_outcome({"id": "evt_7", **_outcome(**over)}), "u")
    assert info.value.field == field  # type: ignore[attr-defined]
    assert field in str(info.value)
