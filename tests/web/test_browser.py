"""The QA web page in a real browser: headless Chromium (Debian's package) driven by Playwright.

The app runs under uvicorn on 127.0.0.1; Chromium signs in with the admin
token, picks a month, filters the nonconformities, downloads the CSV
export and the PDF report, settles a review item, and takes screenshots kept under
``test-artifacts/web/`` (ignored by git; the paths are printed). Every
request the browser makes is recorded: none may leave 127.0.0.1. The test
skips when Chromium or Playwright is missing, unless
``QLOOP_REQUIRE_SERVICES=1`` (then it fails).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from sqlalchemy import select

from core.store.models import Match, Nonconformity
from tests.api.conftest import TOKENS, Served
from tests.conftest import REQUIRE_SERVICES
from tests.web.conftest import review_items

CHROMIUM = os.environ.get("QLOOP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (QLOOP_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def site(served: Served) -> Iterator[str]:
    """The served month under a real uvicorn on 127.0.0.1; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(served.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def test_qa_signs_in_picks_a_month_filters_downloads_and_settles(
    served: Served, site: str, tmp_path: Path
) -> None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _need(f"Chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("Playwright for Python")
    [item] = review_items(served, 1)
    with served.rt.db.session() as s:
        rule = s.scalars(select(Nonconformity.rule).order_by(Nonconformity.id)).first()
        incident_id = s.scalar(select(Match.incident_id).where(Match.incident_id.is_not(None)))
    assert rule and incident_id
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            accept_downloads=True,
            locale="zh-CN",
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.on(
                "request",
                lambda req: (
                    outside.append(req.url)
                    if urlsplit(req.url).hostname not in ("127.0.0.1", None)
                    else None
                ),
            )
            page.goto(f"{site}/qa")
            assert page.url == f"{site}/qa/signin"
            page.fill("#token", TOKENS["admin"])
            page.click("#signin")
            page.wait_for_url(f"{site}/qa")
            assert page.inner_text("#who") == "admin-user"

            page.fill("#month", "2026-10")
            page.click("#show")
            page.wait_for_url(f"{site}/qa?month=2026-10")
            assert "2026-10" in page.inner_text("h1")
            assert page.locator("table.indicators meter").count() > 0
            assert page.locator("#trend figure.chart svg").count() >= 6
            month_shot = ARTIFACTS / "qa-month.png"
            page.screenshot(path=str(month_shot), full_page=True)

            page.click("nav >> text=不符合项")
            page.select_option("#f-rule", rule)
            page.click("#filter")
            page.wait_for_url(f"**/qa/nonconformities?*rule={rule}*")
            rules = page.locator("#ncs tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.rule)"
            )
            assert rules and set(rules) == {rule}
            page.screenshot(path=str(ARTIFACTS / "qa-nonconformities.png"), full_page=True)

            page.click("nav >> text=下载")
            with page.expect_download() as download:
                page.click("#export-csv")
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            assert saved.name == "qloop-2026-10.csv"
            rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
            assert rows[0][:2] == ["source", "incident_key"] and len(rows) > 1
            with page.expect_download() as report:
                page.click("#report-pdf")
            pdf = ARTIFACTS / report.value.suggested_filename
            report.value.save_as(pdf)
            assert pdf.name.startswith("qloop-report-2026-10") and pdf.read_bytes()[:4] == b"%PDF"

            page.click("nav >> text=待复核")
            form = page.locator(f"#item-{item} form")
            form.locator("input[name=incident_id]").fill(str(incident_id))
            form.locator("input[name=note]").fill("同一来电")
            form.locator("button[value=match]").click()
            page.wait_for_selector("#settled")
            assert f"#{item}: matched" in page.inner_text("#settled")
            page.screenshot(path=str(ARTIFACTS / "qa-review.png"), full_page=True)

            page.click("text=退出")
            page.wait_for_url(f"{site}/qa/signin")
        finally:
            context.close()

    with served.rt.db.session() as s:
        settled = s.get(Match, item)
        assert settled is not None
        assert (settled.status, settled.incident_id, settled.decided_by) == (
            "matched",
            incident_id,
            "admin-user",
        )
    assert outside == [], "the page asked for something beyond 127.0.0.1"
    assert month_shot.stat().st_size > 10_000
    print(f"\nscreenshots: {ARTIFACTS}/qa-month.png, qa-nonconformities.png, qa-review.png")
