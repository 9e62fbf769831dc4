"""Compliance exports over HTTP: the XLSX QA downloads equals export_rows; CSV and JSON
lines stream row by row (a big month is never built in memory)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from api.routes import exports
from core.export import COLUMNS, export_rows
from tests.api.conftest import TOKENS, Served, auth


def _expected(served: Served, unmask: bool) -> list[dict[str, Any]]:
    pol = served.rt.policy("default")
    with served.rt.db.session() as s:
        return list(
            export_rows(
                s,
                policy="default",
                version=pol.version,
                month="2026-10",
                tz=ZoneInfo("Asia/Shanghai"),
                unmask=unmask,
            )
        )


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return None if value in ("", None) else value


def _spreadsheet_text(value: str) -> str:
    """What a CSV text cell holds (OWASP): a leading quote before = + - @ tab CR."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def test_qa_downloads_the_month_as_xlsx(served: Served) -> None:
    r = served.client.get("/exports/2026-10", params={"format": "xlsx"}, headers=auth("qa-read"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="qloop-2026-10.xlsx"' in r.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    rows = list(book["incidents"].iter_rows(values_only=True))
    assert rows[0] == COLUMNS
    expected = _expected(served, unmask=False)
    assert expected
    got = [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]
    assert got == [{c: _plain(e[c]) for c in COLUMNS} for e in expected]
    assert all("*" in (g["contact_phone"] or "*") for g in got)  # masked for qa-read
    indicators = dict(book["indicators"].iter_rows(min_row=2, values_only=True))
    assert indicators["month"] == "2026-10"
    book.close()


@pytest.mark.parametrize(("role", "unmask"), [("qa-read", False), ("admin", True)])
def test_csv_export_is_excel_safe_and_masked_per_role(
    served: Served, role: str, unmask: bool
) -> None:
    r = served.client.get("/exports/2026-10", headers=auth(role))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    expected = _expected(served, unmask=unmask)
    assert [row["incident_key"] for row in rows] == [e["incident_key"] for e in expected]
    assert [row["contact_phone"] for row in rows] == [
        _spreadsheet_text(e["contact_phone"] or "") for e in expected
    ]
    assert any(row["contact_phone"].startswith("'+86") for row in rows)  # "+86…" is no formula
    assert [row["title"] for row in rows] == [_spreadsheet_text(e["title"]) for e in expected]


def test_jsonl_export_is_one_row_per_line(served: Served) -> None:
    r = served.client.get("/exports/2026-10", params={"format": "jsonl"}, headers=auth("admin"))
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == _expected(served, unmask=True)


def test_bad_export_requests_are_problem_details(served: Served) -> None:
    bad_period = served.client.get("/exports/2026-13", headers=auth("admin"))
    assert bad_period.status_code == 422
    assert bad_period.json()["errors"][0]["path"] == "path.period"
    bad_format = served.client.get(
        "/exports/2026-10", params={"format": "pdf"}, headers=auth("admin")
    )
    assert bad_format.status_code == 422
    assert bad_format.json()["errors"][0]["path"] == "query.format"
    bad_policy = served.client.get(
        "/exports/2026-10", params={"policy": "nope"}, headers=auth("admin")
    )
    assert bad_policy.status_code == 404 and "nope" in bad_policy.json()["detail"]


def _big_month(pulled: list[int], n: int) -> Any:
    def rows(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for i in range(n):
            pulled[0] += 1
            yield {c: f"{c}-{i}-{'数据' * 4}" for c in COLUMNS}

    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_big_month_streams_in_chunks_without_building_the_body(
    served: Served, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    n = 20_000
    pulled = [0]
    monkeypatch.setattr(exports, "export_rows", _big_month(pulled, n))
    chunks: list[tuple[int, int]] = []  # (size, rows pulled when sent)
    status: list[int] = []

    requested = [False]

    async def receive() -> dict[str, Any]:
        if not requested[0]:
            requested[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body" and message.get("body"):
            chunks.append((len(message["body"]), pulled[0]))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/exports/2026-10",
        "raw_path": b"/exports/2026-10",
        "query_string": f"format={fmt}".encode(),
        "headers": [(b"authorization", f"Bearer {TOKENS['admin']}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    tracemalloc.start()
    try:
        asyncio.run(served.app(scope, receive, send))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = sum(size for size, _ in chunks)
    assert status == [200] and pulled[0] == n
    assert len(chunks) > 20
    assert max(size for size, _ in chunks) < 4 * exports.CHUNK_BYTES
    assert chunks[0][1] < n / 10  # the first bytes left long before the last row was read
    assert peak < total / 4, (peak, total)


def test_xlsx_as_of_is_the_same_bytes_and_has_the_nc_sheet(served: Served) -> None:
    params = {"format": "xlsx", "as_of": "2026-11-05T00:00:00+08:00"}
    first = served.client.get("/exports/2026-10", params=params, headers=auth("qa-read"))
    second = served.client.get("/exports/2026-10", params=params, headers=auth("qa-read"))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    book = openpyxl.load_workbook(io.BytesIO(first.content), read_only=True)
    assert book.sheetnames == ["incidents", "indicators", "nonconformities"]
    header = next(book["nonconformities"].iter_rows(values_only=True))
    assert header[:8] == (
        "source",
        "incident_key",
        "rule",
        "severity",
        "resolution",
        "raised_at",
        "deadline",
        "state",
    )
    evaluated = {row[-1] for row in book["incidents"].iter_rows(min_row=2, values_only=True)}
    assert evaluated <= {"2026-11-05T00:00:00+08:00"}
    book.close()


def test_as_of_without_zone_is_a_problem_naming_it(served: Served) -> None:
    for path in ("/exports/2026-10", "/reports/2026-10"):
        r = served.client.get(path, params={"as_of": "2026-11-05T00:00"}, headers=auth("qa-read"))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "as_of" in r.text and "timezone" in r.text
