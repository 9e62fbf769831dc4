"""twilio_taskrouter against the fake Twilio: idempotent tasks, signed webhooks, polling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import connectors.twilio  # noqa: F401  (registers the Twilio types)
from core import registry
from core.connector import Channel, WebhookReceiver
from core.errors import FatalError, InputError, RetriableError
from core.loop.collect import accept_outcomes, collect
from core.records import Contact, OutboundMessage
from core.runtime import Runtime
from core.store.models import Response as StoredResponse
from tests.fakes.server import serve
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    WORKFLOW_SID,
    WORKSPACE_SID,
    FakeTwilio,
    post_callback,
)
from tests.utils.loop import AFTER_MONTH, Deployment, sandbox_config


def channel_options(base_url: str, **extra: object) -> dict[str, object]:
    return {
        "type": "twilio_taskrouter",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "workspace_sid": WORKSPACE_SID,
        "workflow_sid": WORKFLOW_SID,
        "base_url": base_url,
        **extra,
    }


def twilio_channels(base_url: str) -> dict[str, object]:
    """The sandbox deployment's channels with the callback channel on Twilio."""
    return {
        "phone": channel_options(base_url),
        "survey-mail": {"type": "sandbox", "role": "survey", "contact": "email", "seed": "t"},
        "survey-phone": {"type": "sandbox", "role": "survey", "contact": "phone", "seed": "t"},
    }


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio()


@pytest.fixture
def deployment(database_url: str, tmp_path: Path, fake: FakeTwilio) -> Iterator[Deployment]:
    with serve(fake.app) as base_url:
        path = sandbox_config(
            database_url, tmp_path, incidents=20, extra={"channels": twilio_channels(base_url)}
        )
        dep = Deployment(path)
        fake.clock = dep.clock
        yield dep
        dep.close()


def message(i: int = 7, **contact: str | None) -> OutboundMessage:
    resolved = AFTER_MONTH - timedelta(hours=2)
    return OutboundMessage(
        kind="callback", idempotency_key=f"callback:{i}:1", correlation_token=f"tok-{i}",
        source="itsm", incident_external_id=str(10000 + i), incident_key=f"SBX-{i}",
        title="VPN 无法连接", priority="P2",
        contact=Contact(name="张伟", **(contact or {"phone": "138 1234 5678"})),
        resolved_at=resolved, due_at=resolved + timedelta(days=1), customer="华东分公司",
    )  # fmt: skip


OUTCOME = {
    "callback_outcome": {
        "reached": True, "confirmed": True, "score": 5, "agent": "王芳",
        "at": "2026-11-20T00:30:00Z",
    }
}  # fmt: skip


def test_registered_as_a_callback_channel_with_webhooks(deployment: Deployment):
    ctype = registry.get("channel", "twilio_taskrouter")
    assert ctype.mapping == "twilio"
    channel = deployment.open().channel("phone")
    assert isinstance(channel, Channel) and isinstance(channel, WebhookReceiver)
    assert channel.kinds == frozenset({"callback"})
    assert channel.can_reach(Contact(phone="138-1234-5678"))
    assert not channel.can_reach(Contact(email="a@example.com"))


def test_send_creates_the_task_with_attributes_and_callback_timeout(
    deployment: Deployment, fake: FakeTwilio
):
    channel = deployment.open().channel("phone")
    sent = channel.send(message())
    task = fake.tasks[sent.provider_ref]
    attrs = json.loads(task["attributes"])
    assert attrs["qloop_key"] == "callback:7:1" and attrs["qloop_token"] == "tok-7"
    assert attrs["to"] == "+8613812345678" and attrs["incident_key"] == "SBX-7"
    assert attrs["due_at"].endswith("Z") and attrs["name"] == "张伟" and attrs["priority"] == "P2"
    assert task["timeout"] == 86_400 and task["task_channel_unique_name"] == "voice"
    assert task["workflow_sid"] == WORKFLOW_SID


def test_send_after_a_lost_reply_creates_the_task_exactly_once(
    deployment: Deployment, fake: FakeTwilio
):
    rt = deployment.open()
    channel = rt.channel("phone")
    fake.lose_replies = 1
    with pytest.raises(RetriableError):
        channel.send(message())  # created, but the answer was lost
    assert fake.creates == 1
    again = rt.call(lambda: channel.send(message()))  # the outbox sends again
    assert fake.creates == 1 and fake.tasks_by_key()["callback:7:1"] == [again.provider_ref]
    assert channel.lookup("callback:7:1") == again
    assert channel.lookup("callback:8:1") is None


def test_429_bursts_are_waited_out_on_the_injected_sleep(deployment: Deployment, fake: FakeTwilio):
    fake.throttle, fake.retry_after = 2, "4"
    channel = deployment.open().channel("phone")
    sent = channel.send(message())
    assert sent.provider_ref in fake.tasks
    assert deployment.clock.slept[:2] == [4.0, 4.0]


def test_send_refuses_unreachable_contacts_and_bad_credentials(
    database_url: str, tmp_path: Path, fake: FakeTwilio
):
    with serve(fake.app) as base_url:
        channels = twilio_channels(base_url)
        channels["phone"] = channel_options(base_url, auth_token="wrong")
        dep = Deployment(sandbox_config(database_url, tmp_path, extra={"channels": channels}))
        try:
            channel = dep.open().channel("phone")
            with pytest.raises(FatalError, match="no usable phone"):
                channel.send(message(phone=None, email="a@example.com"))
            with pytest.raises(FatalError, match="20003"):
                channel.send(message())
        finally:
            dep.close()
    assert fake.creates == 0


def _count(rt: Runtime, *where: object) -> int:
    with rt.db.session() as s:
        query = select(func.count()).select_from(StoredResponse).where(*where)
        return int(s.scalar(query) or 0)


@pytest.fixture
def receiver(deployment: Deployment) -> Iterator[tuple[str, Runtime]]:
    """qloop's webhook endpoint for the channel, as the API would serve it."""
    rt = deployment.open()

    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            outcomes = rt.channel("phone").receive(dict(request.headers), body, str(request.url))
        except InputError:
            return Response(status_code=403)
        accept_outcomes(rt, "phone", outcomes)
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hooks/phone", hook, methods=["POST"])])
    with serve(app) as url:
        yield f"{url}/hooks/phone", rt


def test_webhook_and_polling_of_one_completion_store_one_response(
    deployment: Deployment, fake: FakeTwilio, receiver: tuple[str, Runtime]
):
    url, rt = receiver
    sid = rt.channel("phone").send(message()).provider_ref
    deployment.clock.advance(hours=1)
    callbacks = fake.complete_task(sid, OUTCOME)
    for params in callbacks:  # reservation.accepted, task.completed, reservation.completed
        assert post_callback(url, params).status_code == 204
    assert _count(rt) == 1
    deployment.clock.advance(minutes=10)
    result = collect(rt, "phone")
    assert result.counts["seen"] == 1 and result.counts["duplicates"] == 1
    assert _count(rt) == 1
    with rt.db.session() as s:
        stored = s.scalars(select(StoredResponse)).one()
        assert stored.provider_event_id == f"{sid}#1" and stored.correlation_token == "tok-7"
        assert (stored.reached, stored.confirmed, stored.score, stored.agent) == (
            True, True, 5.0, "王芳",
        )  # fmt: skip
    assert collect(rt, "phone").counts["seen"] == 0  # the cursor moved past it


def test_polling_alone_collects_completions_and_cancellations(
    deployment: Deployment, fake: FakeTwilio
):
    rt = deployment.open()
    channel = rt.channel("phone")
    done = channel.send(message(1)).provider_ref
    timed_out = channel.send(message(2)).provider_ref
    deployment.clock.advance(hours=3)
    fake.complete_task(done, OUTCOME)
    fake.cancel_task(timed_out)  # nobody recorded an attempt: no outcome
    deployment.clock.advance(minutes=1)
    result = collect(rt, "phone")
    assert result.counts["created"] == 1
    with rt.db.session() as s:
        assert s.scalars(select(StoredResponse.provider_ref)).all() == [done]


def test_forged_and_stale_callbacks_are_refused_and_store_nothing(
    deployment: Deployment, fake: FakeTwilio, receiver: tuple[str, Runtime]
):
    url, rt = receiver
    sid = rt.channel("phone").send(message()).provider_ref
    [_, completed, _] = fake.complete_task(sid, OUTCOME)
    assert post_callback(url, completed, auth_token="attacker").status_code == 403
    assert post_callback(url, completed, auth_token="rotated-old-token").status_code == 403
    assert _count(rt) == 0
    # a genuine delivery to a URL with a query string, then a replay of it: one response
    assert post_callback(url + "?channel=phone", completed).status_code == 204
    assert post_callback(url + "?channel=phone", completed).status_code == 204
    assert _count(rt) == 1
