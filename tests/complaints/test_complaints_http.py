"""``GET /complaints`` and ``GET /complaints/report/{period}``: a sandbox month's complaints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Served, api_config, auth, serve_month


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    path = api_config(database_url, tmp_path, incidents=80, extra={"complaints": {}})
    yield from serve_month(path)


def test_the_complaints_of_a_month_and_their_report(served: Served) -> None:
    answer = served.client.get("/complaints", params={"period": "2026-10"}, headers=auth("qa-read"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["counts"]["total"] == len(body["complaints"]) > 0
    first = body["complaints"][0]
    assert first["key"].startswith("complaint:itsm:") and first["received_at"]
    assert set(body["medians"]) >= {"acknowledged_at", "closed_at", "follow_up_reached_at"}

    doc = served.client.get(
        "/complaints/report/2026-10",
        params={"format": "json", "lang": "en"},
        headers=auth("qa-read"),
    )
    assert doc.status_code == 200
    assert doc.headers["content-disposition"] == (
        'attachment; filename="qloop-complaints-2026-10.json"'
    )
    assert json.loads(doc.content)["counts"] == body["counts"]
    html = served.client.get("/complaints/report/2026", headers=auth("admin"))
    assert html.status_code == 200 and "投诉报告 2026" in html.text  # zh-CN: a CN calendar

    assert (
        served.client.get(
            "/complaints", params={"period": "2026-13"}, headers=auth("admin")
        ).status_code
        == 422
    )
    assert served.client.get("/complaints", params={"period": "2026-10"}).status_code == 401
