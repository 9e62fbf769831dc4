"""The real signed webhook channel behind ``POST /webhooks/{channel}``: verified, stored once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.webhook.signing import decode_secret, signed_headers
from core.store.models import Response
from tests.api.conftest import Served, api_config, serve_month

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def ivr(database_url: str, tmp_path: Path) -> Iterator[Served]:
    path = api_config(
        database_url,
        tmp_path,
        channel_token_channels=("hook", "ivr"),
    )
    text = path.read_text(encoding="utf-8")
    channel = (
        "  ivr:\n    type: webhook\n    url: http://127.0.0.1:9/tasks\n"
        f"    signing_secret: {SECRET}\n    kinds: [survey]\n"
    )
    path.write_text(text.replace("channels:\n", "channels:\n" + channel, 1), encoding="utf-8")
    yield from serve_month(path, loop=False)


def delivery(served: Served, webhook_id: str, score: int, age_s: int = 0) -> tuple[bytes, dict]:
    at = served.rt.now() - timedelta(seconds=age_s)
    doc = {
        "type": "outcome.reported",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "kind": "survey_answer",
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "correlation_token": "tok-unknown",
            "score": score,
            "confirmed": True,
        },
    }
    body = json.dumps(doc).encode()
    headers = signed_headers([decode_secret(SECRET, "secret")], webhook_id, at, body)
    return body, {**headers, "content-type": "application/json"}


def stored(served: Served) -> list[Response]:
    with served.rt.db.session() as s:
        return list(s.scalars(select(Response).where(Response.channel == "ivr")))


def test_signed_delivery_is_stored_once_and_forgeries_are_refused(ivr: Served) -> None:
    body, headers = delivery(ivr, "msg_one", 4)
    r = ivr.client.post("/webhooks/ivr", content=body, headers=headers)
    assert r.status_code in (200, 202, 204), r.text
    [resp] = stored(ivr)
    assert (resp.provider_event_id, resp.score_raw) == ("msg_one", 4)

    # the same delivery again: harmless
    assert ivr.client.post("/webhooks/ivr", content=body, headers=headers).status_code < 300
    assert len(stored(ivr)) == 1

    # a body changed after signing, and a stale timestamp: 401, nothing stored
    forged = body.replace(b'"score": 4', b'"score": 1')
    r = ivr.client.post("/webhooks/ivr", content=forged, headers=headers)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem")
    old_body, old_headers = delivery(ivr, "msg_old", 5, age_s=3600)
    stale = ivr.client.post("/webhooks/ivr", content=old_body, headers=old_headers)
    assert stale.status_code == 401
    assert [x.provider_event_id for x in stored(ivr)] == ["msg_one"]
