"""Signed or authorised inputs the store cannot hold get a 4xx problem detail, never a 500.

The corpus ``unstorable_inputs.json`` holds webhook deliveries (through the
real Standard Webhooks channel), outcomes posted to the API and query
strings: over-long ids and tokens, NUL characters, NaN and Infinity,
deeply nested and oversized JSON. On SQLite and PostgreSQL each must be
answered 4xx with a problem detail, store no response and write no audit
row; the same request with the fault removed is then accepted, so the 4xx
comes from the fault and not from a broken delivery.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from connectors.webhook.signing import decode_secret, signed_headers
from core.store.models import AuditLog, Response
from tests.api.conftest import Served, TestClient, api_config, auth, serve_month
from tests.safety import corpus

CORPUS = corpus("unstorable_inputs")
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_PLACEHOLDER = re.compile(r'"\$(nest|literal):([^"]*)"')


def expand(value: Any) -> Any:
    """The corpus value with ``{"$repeat": c, "times": n}`` expanded."""
    if isinstance(value, dict):
        if "$repeat" in value:
            return str(value["$repeat"]) * int(value["times"])
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def to_json(doc: Any) -> bytes:
    """JSON with ``"$nest:N"`` and ``"$literal:T"`` placeholders turned into raw JSON."""

    def raw(m: re.Match[str]) -> str:
        if m.group(1) == "nest":
            depth = int(m.group(2))
            return "[" * depth + "]" * depth
        return m.group(2)

    return _PLACEHOLDER.sub(raw, json.dumps(doc)).encode()


@pytest.fixture
def ivr(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """The served month with a real webhook channel ``ivr``; 500s answered, not raised."""
    path = api_config(database_url, tmp_path, channel_token_channels=("hook", "ivr"))
    channel = (
        "  ivr:\n    type: webhook\n    url: http://127.0.0.1:9/tasks\n"
        f"    signing_secret: {SECRET}\n    kinds: [survey, callback]\n"
    )
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("channels:\n", "channels:\n" + channel, 1), encoding="utf-8")
    for served in serve_month(path, loop=False):
        app = create_app(served.rt.config, runtime=served.rt)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Served(served.deployment, served.rt, client)


def _counts(served: Served) -> tuple[int, int]:
    with served.rt.db.session() as s:
        responses = s.scalar(select(func.count()).select_from(Response)) or 0
        audits = (  # a token's first use of the day is audited, refused request or not
            s.scalar(
                select(func.count()).select_from(AuditLog).where(AuditLog.action != "token.use")
            )
            or 0
        )
    return int(responses), int(audits)


def _assert_refused(r: Any, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"] == "application/problem+json", what
    assert r.json()["status"] == r.status_code


def _delivery(served: Served, webhook_id: str, data: dict[str, Any]) -> tuple[bytes, dict]:
    at = served.rt.now()
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    item = {"kind": "callback_attempt", "occurred_at": stamp, "reached": True, "score": 4}
    doc = {"type": "outcome.reported", "timestamp": stamp, "data": {**item, **data}}
    body = to_json(doc)
    headers = signed_headers([decode_secret(SECRET, "secret")], webhook_id, at, body)
    return body, {**headers, "content-type": "application/json"}


@pytest.mark.parametrize("case", CORPUS["webhook"], ids=[c["name"] for c in CORPUS["webhook"]])
def test_unstorable_webhook_delivery_is_4xx_and_changes_nothing(
    ivr: Served, case: dict[str, Any]
) -> None:
    before = _counts(ivr)
    webhook_id = expand(case.get("webhook_id", "msg_" + uuid.uuid4().hex))
    body, headers = _delivery(ivr, webhook_id, expand(case.get("data", {})))
    r = ivr.client.post("/webhooks/ivr", content=body, headers=headers)
    _assert_refused(r, case["name"])
    assert r.status_code != 401, "a correctly signed delivery is not a signature problem"
    assert _counts(ivr) == before
    # the same delivery without the fault is stored: the 4xx came from the fault
    good, good_headers = _delivery(ivr, "msg_ok", {})
    assert ivr.client.post("/webhooks/ivr", content=good, headers=good_headers).status_code == 200
    assert _counts(ivr)[0] == before[0] + 1


def test_a_signed_delivery_at_every_limit_is_stored(ivr: Served) -> None:
    data = {
        "correlation_token": "t" * 64,
        "comment": "c" * 5000,
        "contact": {"name": "n" * 200, "phone": "1" * 100, "email": "e" * 320},
    }
    body, headers = _delivery(ivr, "w" * 200, data)
    r = ivr.client.post("/webhooks/ivr", content=body, headers=headers)
    assert r.status_code == 200, r.text
    with ivr.rt.db.session() as s:
        stored = s.scalars(select(Response).where(Response.channel == "ivr")).one()
    assert stored.provider_event_id == "w" * 200 and stored.correlation_token == "t" * 64


def _outcomes_body(outcome: dict[str, Any]) -> bytes:
    base = {
        "provider_event_id": "api-" + uuid.uuid4().hex,
        "kind": "callback_attempt",
        "occurred_at": "2026-10-21T09:30:00+08:00",
        "reached": True,
        "score": 4,
    }
    return to_json({"outcomes": [{**base, **outcome}]})


@pytest.mark.parametrize(
    "case", CORPUS["outcomes_api"], ids=[c["name"] for c in CORPUS["outcomes_api"]]
)
def test_unstorable_outcome_posted_to_the_api_is_4xx(ivr: Served, case: dict[str, Any]) -> None:
    before = _counts(ivr)
    headers = {**auth("channel"), "content-type": "application/json"}
    body = _outcomes_body(expand(case["outcome"]))
    r = ivr.client.post("/channels/hook/outcomes", content=body, headers=headers)
    _assert_refused(r, case["name"])
    assert _counts(ivr) == before
    ok = ivr.client.post("/channels/hook/outcomes", content=_outcomes_body({}), headers=headers)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("url", CORPUS["query"])
def test_nul_in_a_query_or_path_is_400(ivr: Served, url: str) -> None:
    r = ivr.client.get(url, headers=auth("admin"))
    _assert_refused(r, url)
    assert r.status_code == 400 and "NUL" in r.json()["detail"]
    assert ivr.client.get(url.replace("%00", ""), headers=auth("admin")).status_code < 500


def test_the_store_limits_are_the_published_limits(ivr: Served) -> None:
    from core import limits
    from core.store.models import CallbackTask, SurveyInvitation

    columns = Response.__table__.columns
    expected = {
        "provider_event_id": limits.EVENT_ID_MAX,
        "correlation_token": limits.TOKEN_MAX,
        "provider_ref": limits.REF_MAX,
        "contact_phone": limits.PHONE_MAX,
        "contact_email": limits.EMAIL_MAX,
        "agent": limits.NAME_MAX,
    }
    assert {name: columns[name].type.length for name in expected} == expected
    for table in (CallbackTask, SurveyInvitation):
        assert table.__table__.columns["correlation_token"].type.length == limits.TOKEN_MAX

    schema = corpus_schema()["$defs"]["outcome"]["properties"]
    assert schema["id"]["maxLength"] == limits.EVENT_ID_MAX
    assert schema["correlation_token"]["maxLength"] == limits.TOKEN_MAX
    assert schema["comment"]["maxLength"] == limits.COMMENT_MAX
    contact = schema["contact"]["properties"]
    assert [contact[k]["maxLength"] for k in ("name", "phone", "email")] == [
        limits.NAME_MAX,
        limits.PHONE_MAX,
        limits.EMAIL_MAX,
    ]

    api = ivr.client.get("/openapi.json").json()["components"]["schemas"]["OutcomeIn"]
    props = api["properties"]

    def max_length(prop: dict[str, Any]) -> int:
        found = [p["maxLength"] for p in prop.get("anyOf", [prop]) if "maxLength" in p]
        return int(found[0])

    assert max_length(props["provider_event_id"]) == limits.EVENT_ID_MAX
    assert max_length(props["correlation_token"]) == limits.TOKEN_MAX
    assert max_length(props["comment"]) == limits.COMMENT_MAX


def corpus_schema() -> dict[str, Any]:
    from connectors.webhook.payloads import schema

    return schema("outcome")
