"""The loop on a sandbox month with the callback channel on (fake) Twilio TaskRouter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import connectors.twilio  # noqa: F401  (registers the Twilio types)
from core.errors import InputError
from core.loop import run_once
from core.loop.collect import accept_outcomes
from core.runtime import Runtime
from core.store.models import CallbackTask, Match
from core.store.models import Response as StoredResponse
from tests.connectors.test_twilio_taskrouter import twilio_channels
from tests.fakes.server import serve
from tests.fakes.twilio import FakeTwilio, post_callback
from tests.utils.loop import Deployment, sandbox_config


def _count(rt: Runtime, model: object, *where: object) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[tuple[Deployment, FakeTwilio, str]]:
    fake = FakeTwilio()
    with serve(fake.app) as base_url:
        path = sandbox_config(
            database_url, tmp_path, incidents=40, extra={"channels": twilio_channels(base_url)}
        )
        dep = Deployment(path)
        fake.clock = dep.clock
        rt = dep.open()

        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                outcomes = rt.channel("phone").receive(
                    dict(request.headers), body, str(request.url)
                )
            except InputError:
                return Response(status_code=403)
            accept_outcomes(rt, "phone", outcomes)
            return Response(status_code=204)

        app = Starlette(routes=[Route("/hooks/phone", hook, methods=["POST"])])
        with serve(app) as hook_url:
            yield dep, fake, f"{hook_url}/hooks/phone"
        dep.close()


def play_agents(fake: FakeTwilio, hook_url: str) -> None:
    """Agents work every pending task; every other completion is only seen by polling."""
    at = fake.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    for n, sid in enumerate(fake.pending_tasks()):
        if n % 5 == 4:
            attempts = [
                {"reached": False, "at": at},
                {"reached": "no_answer", "at": at},
                {"reached": False, "at": at},
            ]
            fake.work_task(sid, attempts, {"comment": "未接通"})
            continue
        outcome = {
            "reached": True, "confirmed": n % 7 != 3, "score": 5 - n % 4, "comment": "好",
            "at": at,
        }  # fmt: skip
        callbacks = fake.complete_task(sid, {"callback_outcome": outcome})
        if n % 2 == 0:
            for params in callbacks:
                assert post_callback(hook_url, params).status_code == 204


def test_each_callback_task_reaches_twilio_once_and_every_answer_is_matched(world):
    dep, fake, hook_url = world
    rt = dep.open()
    fake.lose_replies, fake.throttle = 2, 3  # lost replies and a 429 burst on the first push
    for _ in range(3):
        summary = run_once(rt)
        assert summary.errors == []
        dep.clock.advance(hours=2)
        play_agents(fake, hook_url)
        dep.clock.advance(minutes=30)
    run_once(rt)

    by_key = fake.tasks_by_key()
    assert len(by_key) >= 20 and all(len(sids) == 1 for sids in by_key.values())
    assert fake.creates == len(fake.tasks)  # lost replies were found, not created again
    with rt.db.session() as s:
        refs = set(
            s.scalars(
                select(CallbackTask.provider_ref).where(CallbackTask.provider_ref.is_not(None))
            )
        )
    assert refs == set(fake.tasks)
    assert all(json.loads(t["attributes"])["qloop_token"] for t in fake.tasks.values())
    # every answer is stored once and matched to its incident (or waits in review)
    responses = _count(rt, StoredResponse)
    assert responses >= len(fake.tasks)  # unreached tasks report three attempts
    assert _count(rt, Match) == responses
    assert _count(rt, StoredResponse, StoredResponse.matched.is_(False)) == 0

    before = (len(fake.tasks), fake.creates, responses)
    again = run_once(dep.open())  # another process: nothing new reaches Twilio
    assert again.errors == [] and again.sent() == 0
    assert (len(fake.tasks), fake.creates, _count(rt, StoredResponse)) == before
