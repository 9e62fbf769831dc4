"""The kit pieces added when Jira moved onto it: capped offsets, last flags, one JSON parse,
the rejected key of an unreadable record, the old jira_sm cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.http import json_loads
from connectors.kit import paging
from connectors.kit.cursor import Cursor, to_ms
from connectors.kit.paging import (
    LoopGuard,
    NextTokenPaginator,
    OffsetPaginator,
    PageRequest,
    Paginator,
    body_of,
)
from connectors.kit.stream import Driver, Raw, paginate
from core.errors import InputError
from core.records import IncidentRecord

BASE = "https://tool.example.com"
ROWS = [{"id": n} for n in range(1, 24)]  # 23 records


def walk(paginator: Paginator, cap: int | None = None) -> tuple[list[int], list[str]]:
    """Ids read and the offsets asked for; the tool returns at most ``cap`` per page."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["startAt"])
        size = min(int(request.url.params["maxResults"]), cap or 10**6)
        asked.append(str(start))
        page = ROWS[start : start + size]
        return httpx.Response(
            200,
            json={"values": page, "total": 23, "isLast": start + len(page) >= 23},
        )

    with respx.mock, httpx.Client(base_url=BASE) as client:
        respx.get(f"{BASE}/log").mock(side_effect=answer)

        def send(req: PageRequest) -> httpx.Response:
            url, params = req.target()
            return client.get(url, params=params)

        pages = paginate(
            send,
            PageRequest("/log"),
            paginator,
            lambda r: list(body_of(r)["values"]),
            LoopGuard("test"),
        )
        ids = [row["id"] for page in pages for row in page]
    return ids, asked


def test_offset_by_records_reads_everything_when_the_tool_caps_the_page() -> None:
    jira_like = OffsetPaginator(
        10, offset_param="startAt", limit_param="maxResults", total_path="total", by_records=True
    )
    ids, asked = walk(jira_like, cap=4)  # asked for 10, given 4
    assert ids == list(range(1, 24))
    assert asked == ["0", "4", "8", "12", "16", "20"]
    # by the limit, a capped tool loses records: what by_records is for
    plain = OffsetPaginator(10, offset_param="startAt", limit_param="maxResults")
    lost, _ = walk(plain, cap=4)
    assert lost == [1, 2, 3, 4]  # a short page ends by default


def test_offset_last_flag_ends_without_another_request() -> None:
    flagged = OffsetPaginator(
        10, offset_param="startAt", limit_param="maxResults", last_path="isLast", by_records=True
    )
    ids, asked = walk(flagged)
    assert ids == list(range(1, 24)) and asked == ["0", "10", "20"]


def test_body_of_parses_a_response_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def counting(content: bytes) -> Any:
        nonlocal calls
        calls += 1
        return json_loads(content)

    monkeypatch.setattr(paging, "json_loads", counting)
    response = httpx.Response(200, json={"nextPageToken": "t2", "issues": [{"id": 1}]})
    assert body_of(response)["issues"] == [{"id": 1}]
    nxt = NextTokenPaginator().advance(PageRequest("/s", {"jql": "x"}), response, [{"id": 1}])
    assert nxt is not None and nxt.params["nextPageToken"] == "t2"
    assert calls == 1
    assert body_of(httpx.Response(200, text="<html>")) is None


def test_an_unreadable_record_is_rejected_under_the_key_the_source_names() -> None:
    pages = [[{"id": "1", "key": "SUP-1", "at": "yesterday"}]]

    def identify(raw: Raw) -> tuple[str, datetime]:
        try:
            return str(raw["key"]), datetime.fromisoformat(raw["at"])
        except ValueError:
            raise InputError("bad updated", field="updated_at") from None

    def fetch(since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        return iter(pages)

    def convert(raws: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        raise AssertionError("nothing readable to convert")

    plain = Driver("sources.t", fetch, identify, convert)
    keyed = Driver("sources.t", fetch, identify, convert, key_of=lambda raw: str(raw["key"]))
    assert [r.key for b in plain.pull(None) for r in b.rejected] == ["1"]
    assert [r.key for b in keyed.pull(None) for r in b.rejected] == ["SUP-1"]


def test_the_old_jira_cursor_resumes_at_its_watermark() -> None:
    at = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    old = '{"v":1,"updated":"2026-03-03T10:00:00.000+00:00","seen":[["SUP-2",1772532000000]]}'
    mark = Cursor.decode(old, 120, "sources.jira")
    assert mark.updated_ms == to_ms(at) and mark.is_seen("SUP-2", 1772532000000)
    assert Cursor.decode(mark.encode(), 120, "x").updated_ms == to_ms(at)  # now written as w
