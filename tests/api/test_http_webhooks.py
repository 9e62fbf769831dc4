"""Webhooks: the signature is checked before anything is stored; 2xx only once committed;
a duplicate delivery is harmless; a channel that cannot receive is 404."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from api import intake
from core.store.models import AuditLog, Response
from tests.api.conftest import Served, auth, sign


def _delivery(event: str = "evt-1", **extra: object) -> bytes:
    data = {"id": event, "at": "2026-10-21T09:30:00+08:00", "reached": True, "score": 4, **extra}
    return json.dumps(data).encode()


def _post(served: Served, body: bytes, signature: str | None = None, **headers: str):  # type: ignore[no-untyped-def]
    sig = sign(body) if signature is None else signature
    return served.client.post(
        "/webhooks/hook",
        content=body,
        headers={"x-hook-signature": sig, "content-type": "application/json", **headers},
    )


def _stored(served: Served) -> int:
    with served.rt.db.session() as s:
        return int(
            s.scalar(select(func.count()).select_from(Response).where(Response.channel == "hook"))
            or 0
        )


def _audits(served: Served) -> int:
    with served.rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditLog)) or 0)


def test_signed_delivery_is_stored_and_committed_before_200(served: Served) -> None:
    audits = _audits(served)
    r = _post(served, _delivery(phone="+86 138 0000 0000"))
    assert r.status_code == 200
    assert r.json() == {"channel": "hook", "received": 1, "created": 1, "duplicates": 0}
    # a second process (a fresh runtime on the same database) sees it: it was committed
    other = served.deployment.open()
    with other.db.session() as s:
        resp = s.scalars(select(Response).where(Response.channel == "hook")).one()
    assert resp.provider_event_id == "evt-1" and resp.score == 4
    assert resp.raw["url"] == "http://testserver/webhooks/hook"
    assert _audits(served) == audits  # machine traffic: no audit entry per delivery


def test_duplicate_delivery_is_harmless(served: Served) -> None:
    assert _post(served, _delivery()).status_code == 200
    again = _post(served, _delivery())
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["created"] == 0
    assert _stored(served) == 1


@pytest.mark.parametrize(
    "signature", ["", "0" * 64, sign(b"another body")], ids=["none", "zeros", "other-body"]
)
def test_bad_signature_is_401_and_stores_nothing(served: Served, signature: str) -> None:
    r = _post(served, _delivery(), signature=signature)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/signature")
    assert _stored(served) == 0


def test_malformed_delivery_is_400(served: Served) -> None:
    r = _post(served, b'{"no": "id"}')
    assert r.status_code == 400 and "malformed" in r.json()["detail"]
    assert _stored(served) == 0


def test_channels_that_cannot_receive_are_404(served: Served) -> None:
    body = _delivery()
    assert served.client.post("/webhooks/phone", content=body).status_code == 404
    assert served.client.post("/webhooks/nowhere", content=body).status_code == 404


def test_a_token_sent_with_a_webhook_must_be_valid_and_allowed(served: Served) -> None:
    bad = _post(served, _delivery(), Authorization="Bearer wrong-token-value")
    assert bad.status_code == 401
    qa = _post(served, _delivery(), **auth("qa-read"))
    assert qa.status_code == 403
    ok = _post(served, _delivery(), **auth("channel"))
    assert ok.status_code == 200
    with served.rt.db.session() as s:
        [entry] = s.scalars(select(AuditLog).where(AuditLog.actor == "channel-user"))
    assert entry.action == "token.use"


def test_no_2xx_when_storing_fails(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(intake, "store_deliveries", broken)
    served.client.__exit__(None, None, None)
    from tests.api.conftest import TestClient

    with TestClient(served.app, raise_server_exceptions=False) as client:
        body = _delivery()
        r = client.post("/webhooks/hook", content=body, headers={"x-hook-signature": sign(body)})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "database went away" not in r.text
    assert _stored(served) == 0
