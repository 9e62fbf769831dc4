"""The monthly report's delivery: a real local SMTP server (aiosmtpd), STARTTLS and AUTH.

The server requires TLS before AUTH (``auth_require_tls``) with a throwaway
self-signed certificate made by the ``openssl`` command; the client
verifies it through ``reports.smtp.cafile``.
"""

from __future__ import annotations

import email
import hashlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.report import build_report, render_report
from core.runtime import Runtime
from core.store.models import AuditLog, SentReport
from tests.evidence.conftest import months_config
from tests.utils.loop import Deployment
from workers.delivery import due_period, first_working_day

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

USER, PASSWORD = "qloop", "s3cret-pw"
# 2026-11-02 is a Monday: November's first working day on the CN calendar
FIRST_DAY = datetime(2026, 11, 2, 2, tzinfo=UTC)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_authenticator,
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


def _deployment(
    database_url: str, tmp_path: Path, port: int, cert: Path, password: str
) -> Deployment:
    import yaml

    path = months_config(database_url, tmp_path, incidents=10)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["reports"] = {
        "send": [{"to": ["qa@example.com", "gm@example.com"], "via": "email"}],
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "starttls": True,
            "username": USER,
            "password": password,
            "from": "qloop@example.com",
            "cafile": str(cert),
        },
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


def test_first_working_day_follows_the_calendar(database_url: str, tmp_path: Path) -> None:
    dep = Deployment(months_config(database_url, tmp_path, incidents=1))
    try:
        rt = dep.open()
        cal = rt.policy("default").calendar
        assert (
            first_working_day(cal, "2026-10").isoformat() == "2026-10-08"
        )  # after National Day, 1–7
        assert first_working_day(cal, "2026-11").isoformat() == "2026-11-02"
        assert due_period(rt, datetime(2026, 11, 1, 2, tzinfo=UTC)) is None  # a Sunday
        period, as_of = due_period(rt, FIRST_DAY) or ("", None)
        assert period == "2026-10" and as_of == datetime(2026, 10, 31, 16, tzinfo=UTC)
    finally:
        dep.close()


def test_report_reaches_the_smtp_server_once(
    database_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int, Path]
) -> None:
    from core.loop import run_once
    from workers import jobs

    inbox, port, cert = smtp_server
    dep = _deployment(database_url, tmp_path, port, cert, PASSWORD)
    try:
        rt: Runtime = dep.open()
        run_once(rt)
        dep.clock.now = FIRST_DAY
        (result,) = jobs.deliver(rt)
        assert result.counts["sent"] == 2, result
        assert sorted(r for rcpt, _ in inbox.messages for r in rcpt) == [
            "gm@example.com",
            "qa@example.com",
        ]
        _, msg = inbox.messages[0]
        assert "2026-10" in str(msg["Subject"]) and msg["From"] == "qloop@example.com"
        (part,) = [p for p in msg.walk() if p.get_filename()]
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes) and data.startswith(b"%PDF")
        assert part.get_filename() == "qloop-report-2026-10-default.pdf"
        assert part.get_content_type() == "application/pdf"
        # the report of October as of November's first instant, in the CN calendar's zh-CN
        report = build_report(rt, "2026-10", as_of=datetime(2026, 10, 31, 16, tzinfo=UTC))
        assert data == render_report(report, "pdf", "zh-CN")
        with rt.db.session() as s:
            rows = s.scalars(select(SentReport).order_by(SentReport.recipient)).all()
            assert [r.state for r in rows] == ["sent", "sent"]
            assert [(r.format, r.lang) for r in rows] == [("pdf", "zh-CN")] * 2
            assert rows[0].attachment == "qloop-report-2026-10-default.pdf"
            assert {r.sha256 for r in rows} == {hashlib.sha256(data).hexdigest()}
            assert rows[0].as_of == datetime(2026, 10, 31, 16, tzinfo=UTC)
            assert rows[0].actor == "job:deliver" and rows[0].sent_at == FIRST_DAY
            assert (
                len(s.scalars(select(AuditLog).where(AuditLog.action == "report.send")).all()) == 2
            )

        dep.clock.advance(days=1)  # the next day's run: nothing twice
        (again,) = jobs.deliver(rt)
        assert again.counts["sent"] == 0 and again.counts["already_sent"] == 2
        assert len(inbox.messages) == 2
    finally:
        dep.close()


def test_refused_login_sends_nothing_and_retries_later(
    database_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int, Path]
) -> None:
    from workers import jobs

    inbox, port, cert = smtp_server
    dep = _deployment(database_url, tmp_path, port, cert, "wrong-password")
    try:
        rt = dep.open()
        dep.clock.now = FIRST_DAY
        (result,) = jobs.deliver(rt)
        assert result.counts["failed"] == 2 and not inbox.messages
        with rt.db.session() as s:
            assert s.scalars(select(SentReport)).all() == []  # claims released: tried again later
    finally:
        dep.close()
