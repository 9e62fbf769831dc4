"""Personal data inside free text is masked for qa-read, and in every log line (SPEC §13).

The corpus ``pii_free_text.json`` holds comments and titles with phone
numbers (international, national mobile, landline; spaces and dashes) and
e-mail addresses. qa-read reads them masked in ``/responses``, ``/review``,
``/incidents``, ``/incidents/{id}`` and the exports; admin reads them as
they are. A 500 whose exception carries the customer's data writes none of
it to the log: not through qloop's logger (caplog), not through uvicorn's
own handler (a real uvicorn server with qloop's log config).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.exc import DataError

from core.logs import install_masking, uvicorn_log_config
from core.privacy import mask_pii_text
from core.store.models import Incident, Match, Response
from tests.api.conftest import TOKENS, Served, auth
from tests.safety import corpus

collect = importlib.import_module("core.loop.collect")
PII = corpus("pii_free_text")
CASES: list[dict[str, Any]] = PII["cases"]
RAW_PIECES = sorted({s for case in CASES for s in case["secrets"]})


def _leaks(text: str) -> list[str]:
    """The raw personal data of the corpus found in ``text`` (JSON-decoded too)."""
    return [piece for piece in RAW_PIECES if piece in text or json.dumps(piece)[1:-1] in text]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["text"][:24])
def test_free_text_is_masked(case: dict[str, Any]) -> None:
    masked = mask_pii_text(case["text"])
    assert masked is not None and "*" in masked
    assert [s for s in case["secrets"] if s in masked] == []


@pytest.mark.parametrize("text", PII["kept"])
def test_text_without_personal_data_is_kept(text: str) -> None:
    assert mask_pii_text(text) == text


@pytest.fixture
def chatty(served: Served) -> Served:
    """Comments, titles and review notes full of personal data."""
    texts = [case["text"] for case in CASES]
    with served.rt.db.session() as s:
        for i, resp in enumerate(s.scalars(select(Response).order_by(Response.id))):
            resp.comment = texts[i % len(texts)]
        for i, inc in enumerate(s.scalars(select(Incident).order_by(Incident.id))):
            inc.title = texts[i % len(texts)]
        matches = list(s.scalars(select(Match).order_by(Match.id)))
        for m in matches[:3]:
            m.status, m.reason = "review", texts[0]
    return served


def _pages(served: Served, role: str, path: str) -> str:
    r = served.client.get(path, params={"limit": 500}, headers=auth(role))
    assert r.status_code == 200, r.text
    return r.text


def test_qa_read_sees_no_personal_data_in_free_text_admin_does(chatty: Served) -> None:
    with chatty.rt.db.session() as s:
        inc_id = s.scalar(
            select(Match.incident_id)
            .where(Match.incident_id.is_not(None), Match.status == "matched")
            .limit(1)
        )
    paths = ["/responses", "/review", "/incidents", f"/incidents/{inc_id}", "/exports/2026-10"]
    for path in paths:
        qa = _pages(chatty, "qa-read", path)
        assert _leaks(qa) == [], path
    seen = "".join(_pages(chatty, "admin", p) for p in paths)
    assert set(_leaks(seen)) == set(RAW_PIECES)
    detail = json.loads(_pages(chatty, "qa-read", f"/incidents/{inc_id}"))
    assert "****" in detail["title"] and any("*" in r["comment"] for r in detail["responses"])


def _outcome(n: int) -> dict[str, Any]:
    return {
        "provider_event_id": f"pii-{n}",
        "kind": "callback_attempt",
        "occurred_at": "2026-10-20T10:00:00+08:00",
        "contact": {"phone": "+8613912345678", "email": "zhang.wei@example.cn"},
        "comment": CASES[0]["text"],
    }


def _failing_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refuses the row as a database would: the error quotes its parameters."""

    def refuse(s: Any, channel: str, outcomes: Any, now: Any, result: Any) -> None:
        params = [
            {
                "contact_phone": o.contact.phone if o.contact else None,
                "contact_email": o.contact.email if o.contact else None,
                "comment": o.comment,
            }
            for o in outcomes
        ]
        raise DataError("INSERT INTO response (...) VALUES (...)", params, ValueError("too long"))

    monkeypatch.setattr(collect, "store_outcomes", refuse)


PII_OF_OUTCOME = ["13912345678", "zhang.wei@example.cn", "x@example.com"]


def test_a_500_with_customer_data_logs_none_of_it(
    chatty: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_masking()
    _failing_store(monkeypatch)
    from fastapi.testclient import TestClient

    client = TestClient(chatty.app, raise_server_exceptions=False)
    with caplog.at_level(logging.INFO):
        r = client.post(
            "/channels/hook/outcomes",
            json={"outcomes": [_outcome(1)]},
            headers={"Authorization": f"Bearer {TOKENS['channel']}"},
        )
    assert r.status_code == 500
    assert caplog.text.count("unexpected error on POST /channels/hook/outcomes") == 1
    assert caplog.text.count("Traceback") == 1  # logged once, by qloop
    assert "DataError" in caplog.text and "+86139****5678" in caplog.text  # masked, not dropped
    assert [p for p in PII_OF_OUTCOME if p in caplog.text] == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def uvicorn_server(chatty: Served) -> Iterator[tuple[str, io.StringIO]]:
    """The app under a real uvicorn with qloop's log config; its handler writes to a buffer."""
    port = _free_port()
    config = uvicorn.Config(
        chatty.app, host="127.0.0.1", port=port, log_config=uvicorn_log_config("info")
    )
    out = io.StringIO()
    for name in ("uvicorn", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(out)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", out
    finally:
        server.should_exit = True
        thread.join(20)


def test_uvicorns_own_lines_carry_no_customer_data(
    uvicorn_server: tuple[str, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, out = uvicorn_server
    _failing_store(monkeypatch)
    r = httpx.post(
        f"{url}/channels/hook/outcomes?callback=%2B8613912345678&mail=x@example.com",
        json={"outcomes": [_outcome(2)]},
        headers={"Authorization": f"Bearer {TOKENS['channel']}"},
        timeout=30,
    )
    assert r.status_code == 500
    deadline = time.monotonic() + 10  # the access line is written after the answer left
    while " 500" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = out.getvalue()
    # qloop logged the traceback (through its filter); uvicorn does not log it again
    assert "Exception in ASGI application" not in logged
    assert "POST /channels/hook/outcomes?callback=" in logged and " 500" in logged  # access
    assert [p for p in PII_OF_OUTCOME if p in logged] == [], logged
    assert TOKENS["channel"] not in logged


def test_qloop_jobs_shows_failures_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """RQ keeps a failed job's traceback as it was; ``qloop jobs`` shows it masked."""
    from rq.results import Result

    from api.cli_jobs import error_text

    monkeypatch.setenv("ITSM_API_TOKEN", "tok-0123456789")

    class Failed:
        type = Result.Type.FAILED
        exc_string = (
            "Traceback (most recent call last):\n"
            "DataError: [parameters: {'phone': '13812345678', 'email': 'li.na@example.cn'}] "
            "Basic dG9rLTAxMjM0NTY3ODk="
        )

    class Job:
        def latest_result(self) -> Failed:
            return Failed()

    shown = error_text(Job())  # type: ignore[arg-type]
    assert shown.startswith("Traceback") and "DataError" in shown
    assert [p for p in ("13812345678", "li.na@", "dG9rLTAxMjM0NTY3ODk=") if p in shown] == []
