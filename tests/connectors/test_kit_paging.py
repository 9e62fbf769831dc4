"""Each paginator of the source kit against a respx-mocked API, and the one loop guard."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from connectors.kit.paging import (
    KeysetQueryPaginator,
    KeysetRangePaginator,
    LinkHeaderPaginator,
    LoopGuard,
    NextTokenPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    Paginator,
    ParamAnchor,
    RangePaginator,
    link_targets,
)
from connectors.kit.paths import read
from connectors.kit.stream import paginate
from core.errors import FatalError

BASE = "https://tool.example.com"
ROWS = [{"id": n} for n in range(1, 24)]  # 23 records


def walk(paginator: Paginator, records_path: str = "items", **params: Any) -> list[int]:
    with httpx.Client(base_url=BASE) as client:

        def send(req: PageRequest) -> httpx.Response:
            url, params = req.target()
            return client.get(url, params=params, headers=dict(req.headers))

        pages = paginate(
            send,
            PageRequest("/tickets", params),
            paginator,
            lambda r: list(read(r.json(), records_path) or []),
            LoopGuard("test"),
        )
        return [row["id"] for page in pages for row in page]


@respx.mock
def test_offset_limit_stops_at_the_total_header() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        off, lim = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": ROWS[off : off + lim]},
                              headers={"X-Total-Count": "23"})  # fmt: skip

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(OffsetPaginator(10, total_header="X-Total-Count"), q="x") == list(range(1, 24))
    assert route.call_count == 3
    assert route.calls[0].request.url.params["q"] == "x"


@respx.mock
def test_offset_without_total_goes_on_after_a_short_page_when_told() -> None:
    # a tool applying access rules after the limit: page 1 is short, yet not the end
    pages = {0: ROWS[:7], 10: ROWS[10:20], 20: []}
    respx.get(f"{BASE}/tickets").mock(
        side_effect=lambda r: httpx.Response(
            200, json={"items": pages[int(r.url.params["offset"])]}
        )
    )
    assert walk(OffsetPaginator(10, short_page_ends=False)) == list(range(1, 8)) + list(
        range(11, 21)
    )
    assert walk(OffsetPaginator(10)) == list(range(1, 8))  # short page ends by default


@respx.mock
def test_page_number_stops_on_a_short_page() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page, size = int(request.url.params["page"]), int(request.url.params["per_page"])
        return httpx.Response(200, json={"items": ROWS[(page - 1) * size : page * size]})

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(PageNumberPaginator(10)) == list(range(1, 24))
    assert [c.request.url.params["page"] for c in route.calls] == ["1", "2", "3"]


@respx.mock
def test_next_token_absent_on_the_last_page() -> None:
    tokens = {None: ("A", ROWS[:10]), "A": ("B", ROWS[10:20]), "B": (None, ROWS[20:])}

    def answer(request: httpx.Request) -> httpx.Response:
        nxt, rows = tokens[request.url.params.get("nextPageToken")]
        body: dict[str, Any] = {"issues": rows}
        if nxt:
            body["nextPageToken"] = nxt  # Jira leaves the key out on the last page
        return httpx.Response(200, json=body)

    respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(NextTokenPaginator(), "issues") == list(range(1, 24))


@respx.mock
def test_next_url_in_the_body() -> None:
    respx.get(f"{BASE}/tickets").mock(
        return_value=httpx.Response(200, json={"data": ROWS[:10], "links": {"next": f"{BASE}/p2"}})
    )
    respx.get(f"{BASE}/p2").mock(
        return_value=httpx.Response(200, json={"data": ROWS[10:], "links": {"next": None}})
    )
    assert walk(NextUrlPaginator("links.next"), "data") == list(range(1, 24))


@respx.mock
def test_link_header_next() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        first = f'<{BASE}/tickets?page=1>;rel="first"'
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json={"items": ROWS[10:]}, headers={"Link": first})
        link = f'<{BASE}/tickets?page=2>;rel="next", {first}'
        return httpx.Response(200, json={"items": ROWS[:10]}, headers={"Link": link})

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(LinkHeaderPaginator()) == list(range(1, 24))
    assert route.call_count == 2
    both = link_targets('<a>; rel="next prev", <b>; rel=last')
    assert both == {"next": "a", "prev": "a", "last": "b"}


@respx.mock
def test_range_parameter_with_content_range() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        lo, hi = (int(x) for x in request.url.params["range"].split("-"))
        rows = ROWS[lo : hi + 1]
        end = lo + len(rows) - 1
        status = 206 if end + 1 < len(ROWS) else 200
        return httpx.Response(status, json={"data": rows},
                              headers={"Content-Range": f"{lo}-{end}/{len(ROWS)}"})  # fmt: skip

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(RangePaginator(10), "data") == list(range(1, 24))
    assert [c.request.url.params["range"] for c in route.calls] == ["0-9", "10-19", "20-29"]


@respx.mock
def test_range_header() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        lo, hi = (int(x) for x in request.headers["Range"].split("=")[1].split("-"))
        rows = ROWS[lo : hi + 1]
        told = {"Content-Range": f"items {lo}-{lo + len(rows) - 1}/23"}
        return httpx.Response(206, json={"items": rows}, headers=told)

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    assert walk(RangePaginator(10, param=None, header="Range")) == list(range(1, 24))
    assert route.calls[1].request.headers["Range"] == "items=10-19"


@respx.mock
def test_the_loop_guard_stops_a_repeated_token_and_too_many_pages() -> None:
    respx.get(f"{BASE}/tickets").mock(
        return_value=httpx.Response(200, json={"issues": ROWS[:2], "nextPageToken": "SAME"})
    )
    with pytest.raises(FatalError, match="paging loop"):
        walk(NextTokenPaginator(), "issues")
    guard = LoopGuard("src", max_pages=2)
    guard.check(PageRequest("/a", {"p": 1}))
    guard.check(PageRequest("/a", {"p": 2}))
    with pytest.raises(FatalError, match="more than 2 pages"):
        guard.check(PageRequest("/a", {"p": 3}))


@respx.mock
def test_range_with_partial_status_and_a_size_cap() -> None:
    """206 while more remain (a short 206 is no end), 200 ends; ``Accept-Range`` caps a page."""

    def answer(request: httpx.Request) -> httpx.Response:
        lo, hi = (int(x) for x in request.url.params["range"].split("-"))
        rows = ROWS[lo : min(hi, lo + 3) + 1]  # never more than 4 a page
        status = 206 if lo + len(rows) < len(ROWS) else 200
        return httpx.Response(status, json={"data": rows}, headers={"Accept-Range": "Ticket 4"})

    route = respx.get(f"{BASE}/tickets").mock(side_effect=answer)
    paginator = RangePaginator(10, partial_status=True, size_header="Accept-Range")
    assert walk(paginator, "data") == list(range(1, 24))
    sent = [c.request.url.params["range"] for c in route.calls]
    assert sent[:3] == ["0-9", "4-7", "8-11"] and len(sent) == 6


class KeyedTool:
    """Records sorted on (updated, id), ``updated >= since`` and a range, as GLPI's search."""

    def __init__(self, keys: list[str]) -> None:
        self.rows = [{"id": n, "updated": k} for n, k in enumerate(keys, 1)]
        self.starts: list[int] = []
        self.after_first: dict[int, str] = {}

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.starts and self.after_first:  # changed while the scan runs
            for row in self.rows:
                row["updated"] = self.after_first.get(row["id"], row["updated"])
            self.after_first = {}
        since = request.url.params.get("since", "")
        lo, hi = (int(x) for x in request.url.params["range"].split("-"))
        self.starts.append(lo)
        found = sorted((r for r in self.rows if r["updated"] >= since),
                       key=lambda r: (r["updated"], r["id"]))  # fmt: skip
        page = [dict(r) for r in found[lo : hi + 1]]
        status = 206 if lo + len(page) < len(found) else 200
        told = {"Content-Range": f"{lo}-{lo + len(page) - 1}/{len(found)}"} if page else {}
        return httpx.Response(status, json={"data": page}, headers=told)


def keyset_walk(tool: KeyedTool, size: int) -> list[tuple[int, str]]:
    respx.get(f"{BASE}/tickets").mock(side_effect=tool.answer)
    paginator = KeysetRangePaginator(
        size, partial_status=True, key_path="updated", anchor=ParamAnchor("since"), margin=1
    )
    read_at: dict[tuple[int, str], int] = {}
    with httpx.Client(base_url=BASE) as client:

        def send(req: PageRequest) -> httpx.Response:
            url, params = req.target()
            return client.get(url, params=params)

        for page in paginate(
            send, PageRequest("/tickets"), paginator, lambda r: r.json()["data"], LoopGuard("t")
        ):
            for row in page:
                pair = (row["id"], row["updated"])
                read_at[pair] = read_at.get(pair, 0) + 1
    return sorted(read_at)


@respx.mock
def test_keyset_range_reanchors_on_the_last_key_and_keeps_offsets_small() -> None:
    keys = ["a", "b", "b", "b", "b", "b", "c", "d", "d", "e", "f", "g", "h", "i", "j"]
    tool = KeyedTool(keys)
    assert keyset_walk(tool, 4) == sorted((n, k) for n, k in enumerate(keys, 1))
    # offsets count only the rows read at the anchor key (less the margin), not the data
    assert max(tool.starts) <= keys.count("b") and tool.starts[0] == 0


@respx.mock
def test_keyset_range_loses_no_record_that_moves_during_the_scan() -> None:
    """A record at the anchor key modified after page one moves away (a later key): plain
    offsets would skip the record that slides into its place; the margin re-reads it."""
    keys = ["a", "b", "b", "b", "c", "c", "d", "e"]
    tool = KeyedTool(keys)
    tool.after_first = {2: "z"}  # id 2 ("b", read on page one) moves to the end
    pairs = keyset_walk(tool, 3)
    assert {n for n, _ in pairs} == set(range(1, 9))
    assert (2, "b") in pairs and (2, "z") in pairs  # read again with its new key


class EncodedQueryTool:
    """A Table API in miniature: ``f=v``, ``f>v`` and ``ORDERBYf`` conditions joined by ``^``;
    the limit applies before the access rules (``hidden`` rows are cut from a full page)."""

    def __init__(self, rows: list[dict[str, str]], hidden: set[str]) -> None:
        self.rows, self.hidden = rows, hidden
        self.queries: list[str] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["sysparm_query"]
        self.queries.append(query)
        rows, order = self.rows, []
        for cond in query.split("^"):
            if cond.startswith("ORDERBY"):
                order.append(cond.removeprefix("ORDERBY"))
            elif "=" in cond:
                name, value = cond.split("=", 1)
                rows = [r for r in rows if r[name] == value]
            elif ">" in cond:
                name, value = cond.split(">", 1)
                rows = [r for r in rows if r[name] > value]
        page = sorted(rows, key=lambda r: [r[f] for f in order])
        page = page[: int(request.url.params["sysparm_limit"])]
        return httpx.Response(
            200, json={"result": [r for r in page if r["sys_id"] not in self.hidden]}
        )


def sn_row(sys_id: str, second: int, active: str = "true") -> dict[str, str]:
    return {"sys_id": sys_id, "sys_updated_on": f"2026-10-01 08:00:0{second}", "active": active}


@respx.mock
def test_keyset_query_reads_the_rest_of_a_second_before_going_past_it() -> None:
    """Five records share second 1 with a page of two: without the same-second phase the
    records of that second past the first page would be skipped; a short page (a record
    hidden by an access rule after the limit) is no end."""
    rows = [sn_row("e0", 0), sn_row("a1", 1), sn_row("c1", 1), sn_row("d1", 1),
            sn_row("b1", 1), sn_row("f1", 1), sn_row("z2", 2), sn_row("y2", 2, "false"),
            sn_row("x3", 3)]  # fmt: skip
    tool = EncodedQueryTool(rows, hidden={"c1"})
    respx.get(f"{BASE}/api/now/table/incident").mock(side_effect=tool.answer)
    paginator = KeysetQueryPaginator("active=true")
    pages = walk_pages(paginator, "/api/now/table/incident", {"sysparm_limit": 2})
    read_ids = [row["sys_id"] for page in pages for row in page]
    assert read_ids == ["e0", "a1", "b1", "d1", "f1", "z2", "x3"]
    assert [len(p) for p in pages] == [2, 1, 1, 1, 0, 2, 0, 0]  # short pages are no end
    at = "active=true^sys_updated_on"
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    assert tool.queries == [
        f"active=true^{order}",
        f"{at}=2026-10-01 08:00:01^sys_id>a1^ORDERBYsys_id",
        f"{at}=2026-10-01 08:00:01^sys_id>b1^ORDERBYsys_id",
        f"{at}=2026-10-01 08:00:01^sys_id>d1^ORDERBYsys_id",
        f"{at}=2026-10-01 08:00:01^sys_id>f1^ORDERBYsys_id",
        f"{at}>2026-10-01 08:00:01^{order}",
        f"{at}=2026-10-01 08:00:03^sys_id>x3^ORDERBYsys_id",
        f"{at}>2026-10-01 08:00:03^{order}",
    ]


def walk_pages(paginator: Paginator, path: str, params: dict[str, Any]) -> list[list[Any]]:
    with httpx.Client(base_url=BASE) as client:

        def send(req: PageRequest) -> httpx.Response:
            url, query = req.target()
            return client.get(url, params=query)

        pages = paginate(
            send, PageRequest(path, params), paginator, lambda r: r.json()["result"], LoopGuard("t")
        )
        return list(pages)
