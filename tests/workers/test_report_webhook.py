"""The monthly report by signed webhook: a local HTTP receiver checks the Standard Webhooks
signature with the verifier of :mod:`connectors.webhook.signing`, then the body."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from connectors.webhook.signing import decode_secret, generate_secret, verify
from core.errors import SignatureError
from core.report import build_report, render_report
from core.store.models import SentReport
from tests.evidence.conftest import months_config
from tests.utils.loop import Deployment

FIRST_DAY = datetime(2026, 11, 2, 2, tzinfo=UTC)  # November's first working day (CN)
SECRET = generate_secret()


class Receiver(ThreadingHTTPServer):
    """Answers 204 to a delivery whose signature verifies, 401 otherwise; keeps both."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.refused: list[str] = []
        self.now = FIRST_DAY


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            verify(headers, body, [decode_secret(SECRET, "test")], self.server.now)
        except SignatureError as exc:
            self.server.refused.append(str(exc))
            self.send_response(401)
        else:
            self.server.accepted.append((headers, body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _deployment(database_url: str, tmp_path: Path, url: str, secret: str) -> Deployment:
    path = months_config(database_url, tmp_path, incidents=10)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["reports"] = {
        "send": [{"to": [url], "via": "webhook", "format": "html", "lang": "en", "secret": secret}]
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


def test_signed_report_reaches_the_receiver_once(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    from core.loop import run_once
    from workers import jobs

    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/qa"
    dep = _deployment(database_url, tmp_path, url, SECRET)
    try:
        rt = dep.open()
        run_once(rt)
        dep.clock.now = FIRST_DAY
        (result,) = jobs.deliver(rt)
        assert result.counts["sent"] == 1, result
        assert receiver.refused == []
        ((headers, body),) = receiver.accepted
        assert headers["content-type"] == "application/json"
        doc = json.loads(body)
        content = base64.b64decode(doc["content_base64"])
        report = build_report(rt, "2026-10", as_of=datetime(2026, 10, 31, 16, tzinfo=UTC))
        assert content == render_report(report, "html", "en")
        assert doc["type"] == "report.monthly" and doc["period"] == "2026-10"
        assert doc["name"] == "qloop-report-2026-10-default.html"
        assert doc["media_type"] == "text/html"
        assert doc["sha256"] == hashlib.sha256(content).hexdigest()
        with rt.db.session() as s:
            (row,) = s.scalars(select(SentReport)).all()
            assert (row.state, row.via, row.format, row.lang) == ("sent", "webhook", "html", "en")
            assert row.sha256 == doc["sha256"] and row.recipient == url

        dep.clock.advance(days=1)
        (again,) = jobs.deliver(rt)
        assert again.counts["already_sent"] == 1 and len(receiver.accepted) == 1
    finally:
        dep.close()


def test_a_receiver_refusing_the_signature_gets_it_again_later(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    from workers import jobs

    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/qa"
    dep = _deployment(database_url, tmp_path, url, generate_secret())  # not the receiver's
    try:
        rt = dep.open()
        dep.clock.now = FIRST_DAY
        (result,) = jobs.deliver(rt)
        assert result.counts["failed"] == 1 and receiver.accepted == []
        assert receiver.refused and "signature" in receiver.refused[0].lower()
        with rt.db.session() as s:
            assert s.scalars(select(SentReport)).all() == []  # claim released: retried
    finally:
        dep.close()
