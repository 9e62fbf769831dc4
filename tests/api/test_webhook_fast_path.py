"""POST /webhooks/{channel} without a token is answered by ``WebhookIntake`` (no router):
the same answers as the route, byte for byte; with a token, the route answers."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.routes import webhooks
from core.store.models import Response
from tests.api.conftest import Served, api_config, auth, serve_month, sign


@pytest.fixture
def hooked(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """The API with the ``hook`` channel (no month through the loop: nothing to match)."""
    yield from serve_month(api_config(database_url, tmp_path), loop=False)


@pytest.fixture
def callers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Who ran each delivery: ``__call__`` (the middleware) or ``receive_webhook`` (the route)."""
    seen: list[str] = []
    real = webhooks._intake

    async def spy(*args: Any) -> dict[str, Any]:
        seen.append(sys._getframe(1).f_code.co_name)
        return await real(*args)

    monkeypatch.setattr(webhooks, "_intake", spy)
    return seen


def _body(event: str, **extra: object) -> bytes:
    return json.dumps(
        {"id": event, "at": "2026-10-21T09:30:00+08:00", "score": 4, **extra}
    ).encode()


def _exchanges(served: Served, tag: str) -> list[tuple[int, str, bytes]]:
    """Deliveries good and bad; (status, content type, body) of each answer."""
    client = served.client
    good = _body(f"{tag}-1")
    big = b" " * (webhooks.MAX_BODY + 1)
    requests: list[tuple[str, bytes | Iterator[bytes], dict[str, str]]] = [
        ("/webhooks/hook", good, {"x-hook-signature": sign(good)}),
        ("/webhooks/hook", good, {"x-hook-signature": sign(good)}),  # the provider's retry
        ("/webhooks/hook", good, {"x-hook-signature": "0" * 64}),
        ("/webhooks/hook", b'{"no": "id"}', {"x-hook-signature": sign(b'{"no": "id"}')}),
        ("/webhooks/hook", b"", {"x-hook-signature": sign(b"")}),
        ("/webhooks/nowhere", good, {"x-hook-signature": sign(good)}),
        ("/webhooks/phone", good, {}),
        ("/webhooks/hook", big, {"x-hook-signature": sign(big)}),  # declared too large
        ("/webhooks/hook", iter([big[:600_000], big[600_000:]]), {}),  # chunked, too large
    ]
    answers = []
    for path, content, headers in requests:
        r = client.post(
            path, content=content, headers={"content-type": "application/json", **headers}
        )
        answers.append((r.status_code, r.headers["content-type"], r.content))
    return answers


def test_the_middleware_answers_exactly_as_the_route(
    hooked: Served, callers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _exchanges(hooked, "fast")
    assert set(callers) == {"__call__"}
    assert [status for status, _, _ in fast] == [200, 200, 401, 400, 400, 404, 404, 413, 413]
    assert json.loads(fast[1][2]) == {
        "channel": "hook",
        "received": 1,
        "created": 0,
        "duplicates": 1,
    }

    callers.clear()
    monkeypatch.setattr(webhooks, "_FAST_PATH", re.compile("(?!)"))  # matches nothing
    routed = _exchanges(hooked, "routed")
    assert set(callers) == {"receive_webhook"}
    assert routed == fast
    with hooked.rt.db.session() as s:
        stored = s.scalars(select(Response).where(Response.channel == "hook")).all()
    assert sorted(r.provider_event_id for r in stored) == ["fast-1", "routed-1"]
    assert {r.raw["url"] for r in stored} == {"http://testserver/webhooks/hook"}


def test_a_delivery_with_a_token_goes_to_the_route(hooked: Served, callers: list[str]) -> None:
    body = _body("tok-1")
    headers = {"x-hook-signature": sign(body), **auth("channel")}
    assert hooked.client.post("/webhooks/hook", content=body, headers=headers).status_code == 200
    headers = {"x-hook-signature": sign(body), **auth("qa-read")}
    assert hooked.client.post("/webhooks/hook", content=body, headers=headers).status_code == 403
    assert callers == ["receive_webhook"] * 2


def test_other_methods_and_paths_go_to_the_router(hooked: Served, callers: list[str]) -> None:
    assert hooked.client.get("/webhooks/hook").status_code == 405
    body = _body("slash-1")
    r = hooked.client.post(
        "/webhooks/hook/",
        content=body,
        headers={"x-hook-signature": sign(body)},
        follow_redirects=False,
    )
    assert r.status_code == 307  # the router's redirect to the path without the slash
    assert hooked.client.post("/webhooks/-bad", content=body).status_code == 422
    assert callers == []


def test_a_client_gone_before_its_body_ends_gets_no_answer_and_nothing_is_stored(
    hooked: Served,
) -> None:
    body = _body("gone-1")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/hook",
        "raw_path": b"/webhooks/hook",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-hook-signature", sign(body).encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    messages = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(hooked.app(scope, receive, send))
    assert sent == []
    with hooked.rt.db.session() as s:
        assert s.scalars(select(Response).where(Response.channel == "hook")).all() == []
