"""GLPI connector units on respx: headers, sessions, range paging, errors, text and time."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
import yaml

import mappings
from connectors.glpi import GlpiSource
from connectors.glpi.convert import ServerClock, decode_text, html_to_text
from connectors.glpi.options import resolve
from connectors.glpi.search import (
    SCOPE,
    parse_content_range,
    scan,
    search_page,
)
from connectors.kit.cursor import Cursor, to_ms
from core import registry
from core.conf import load_config
from core.connector import ConnectorContext, Probe, Source
from core.errors import ConfigError, FatalError, InputError, RetriableError, StateError

BASE = "https://glpi.example.test/apirest.php"
PARIS = ZoneInfo("Europe/Paris")
OPTS = {"base_url": BASE, "app_token": "app-tok", "user_token": "usr-tok",
        "server_timezone": "Europe/Paris"}  # fmt: skip


def source(tmp_path: Path, waits: list[float] | None = None, **extra: object) -> GlpiSource:
    sleeps = waits if waits is not None else []
    ctx = ConnectorContext(state_dir=tmp_path, mapping=mappings.load("glpi"), sleep=sleeps.append)
    return GlpiSource("glpi", {**OPTS, **extra}, ctx)


def init_route(token: str = "sess-1") -> respx.Route:
    return respx.get(f"{BASE}/initSession").mock(
        return_value=httpx.Response(200, json={"session_token": token})
    )


def test_registered_with_schema_and_mapping(tmp_path: Path) -> None:
    entry = registry.get("source", "glpi")
    assert entry.factory is GlpiSource and entry.mapping == "glpi"
    assert {"base_url", "server_timezone"} <= set(entry.options_schema["required"])
    src = source(tmp_path)
    assert isinstance(src, Source) and isinstance(src, Probe)


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"base_url": BASE, "server_timezone": "Europe/Paris"}, "sources.g"),
        ({**OPTS, "username": "u", "password": "p"}, "sources.g"),
        ({**OPTS, "server_timezone": "Mars/Olympus"}, "sources.g.server_timezone"),
        ({**OPTS, "base_url": "https://glpi.example.test/api.php"}, "sources.g.base_url"),
        ({**OPTS, "overlap": "soon"}, "sources.g.overlap"),
    ],
    ids=["no-auth", "both-auths", "bad-zone", "not-apirest", "bad-overlap"],
)
def test_options_errors_name_the_key(options: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve("g", options)
    assert where in {p.path for p in err.value.problems}
    assert "usr-tok" not in str(err.value)


def test_schema_errors_are_found_once_by_the_config_validator(tmp_path: Path) -> None:
    """What the schema says (a page size below 1) is checked when the file is loaded, with
    its line; resolve() reads the options through the kit and does not check it again."""
    doc = {"database_url": "sqlite://", "timezone": "Europe/Paris",
           "sources": {"g": {"type": "glpi", **OPTS, "page_size": 0}}}  # fmt: skip
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "page_size" in t)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert ("sources.g.page_size", line) in {(p.path, p.line) for p in err.value.problems}
    assert "usr-tok" not in str(err.value)
    assert resolve("g", {**OPTS, "page_size": 7}).page_size == 7
    assert resolve("g", OPTS).page_size == 200 and resolve("g", OPTS).overlap_s == 300


@respx.mock
def test_user_token_session_headers_and_kill(tmp_path: Path) -> None:
    init = init_route()
    search = respx.get(f"{BASE}/search/Ticket").mock(
        return_value=httpx.Response(
            200, json={"totalcount": 0, "count": 0}, headers={"Content-Range": "0--1/0"}
        )
    )
    kill = respx.get(f"{BASE}/killSession").mock(return_value=httpx.Response(200, json=True))
    src = source(tmp_path)
    assert list(src.pull(None)) == []
    sent = init.calls.last.request.headers
    assert sent["Authorization"] == "user_token usr-tok" and sent["App-Token"] == "app-tok"
    query = search.calls.last.request.url.params
    assert search.calls.last.request.headers["Session-Token"] == "sess-1"
    assert "usr-tok" not in str(search.calls.last.request.url)
    assert query["sort"] == "19" and query["order"] == "ASC" and query["range"] == "0-199"
    assert query["forcedisplay[0]"] == "1"
    # a first pull says what it wants: every status (no default "not solved" search) ...
    assert (query["criteria[0][field]"], query["criteria[0][searchtype]"]) == ("12", "equals")
    assert query["criteria[0][value]"] == "all"
    # ... but none of qloop's own tickets, and it reads the trash too
    assert query["criteria[1][link]"] == "AND NOT" and query["criteria[1][value]"] == "[qloop:"
    trash = [c.request.url.params.get("is_deleted") for c in search.calls]
    assert "1" in trash and None in trash
    src.close()
    assert kill.calls.last.request.headers["Session-Token"] == "sess-1"


@respx.mock
def test_basic_auth_and_entity_restriction(tmp_path: Path) -> None:
    init = init_route()
    entities = respx.post(f"{BASE}/changeActiveEntities").mock(
        return_value=httpx.Response(200, json=True)
    )
    opts = {k: v for k, v in OPTS.items() if k != "user_token"}
    ctx = ConnectorContext(state_dir=tmp_path, mapping=mappings.load("glpi"))
    src = GlpiSource("g", {**opts, "username": "api", "password": "pässwd", "entity": 3}, ctx)
    src.session.token()
    auth = init.calls.last.request.headers["Authorization"]
    assert auth == "Basic " + base64.b64encode("api:pässwd".encode()).decode()
    assert json.loads(entities.calls.last.request.content) == {
        "entities_id": 3, "is_recursive": True}  # fmt: skip


@respx.mock
def test_expired_session_is_reopened_once_and_the_call_retried(tmp_path: Path) -> None:
    init = respx.get(f"{BASE}/initSession").mock(
        side_effect=[httpx.Response(200, json={"session_token": t}) for t in ("s1", "s2", "s3")]
    )
    expired = httpx.Response(401, json=["ERROR_SESSION_TOKEN_INVALID", "session_token invalid"])
    route = respx.get(f"{BASE}/Ticket/7").mock(
        side_effect=[expired, httpx.Response(200, json={"id": 7, "status": 2})]
    )
    src = source(tmp_path)
    assert src.ticket_status("7").status == "Processing (assigned)"
    assert init.call_count == 2
    assert [c.request.headers["Session-Token"] for c in route.calls] == ["s1", "s2"]
    route.mock(side_effect=[expired, expired])  # refused again: no login loop
    with pytest.raises(FatalError, match="ERROR_SESSION_TOKEN_INVALID"):
        src.ticket_status("7")
    assert init.call_count == 3


def page(rows: list[dict], start: int, total: int, status: int = 206) -> httpx.Response:
    end = start + len(rows) - 1
    return httpx.Response(status, json={"totalcount": total, "count": len(rows), "data": rows},
                          headers={"Content-Range": f"{start}-{end}/{total}",
                                   "Accept-Range": "Ticket 990"})  # fmt: skip


def row(ticket_id: int, date_mod: str) -> dict:
    return {"2": ticket_id, "1": f"t{ticket_id}", "19": date_mod, "12": 1}


@respx.mock
def test_scan_pages_206_then_200_reanchoring_on_date_mod(tmp_path: Path) -> None:
    init_route()
    route = respx.get(f"{BASE}/search/Ticket").mock(
        side_effect=[
            page([row(1, "2026-10-01 10:00:00"), row(2, "2026-10-01 10:00:05")], 0, 5),
            page([row(3, "2026-10-01 10:00:05"), row(4, "2026-10-01 10:00:07")], 0, 4),
            page([row(4, "2026-10-01 10:00:07"), row(5, "2026-10-01 10:00:09")], 0, 2, 200),
        ]
    )
    src = source(tmp_path)
    pages = list(scan(src.session, "2026-10-01 09:00:00", None, 2))
    assert [[r["id"] for r in p] for p in pages] == [[1, 2], [3, 4], [5]]
    sent = [c.request.url.params for c in route.calls]
    assert sent[0]["criteria[2][value]"] == "2026-10-01 08:59:59"  # after SCOPE's two
    assert sent[1]["criteria[2][value]"] == "2026-10-01 10:00:04"  # anchored, minus 1 s
    assert sent[1]["range"] == "0-1" and sent[2]["range"] == "0-1"


@respx.mock
def test_range_exceeding_the_total_is_the_end_of_data(tmp_path: Path) -> None:
    init_route()
    respx.get(f"{BASE}/search/Ticket").mock(
        return_value=httpx.Response(
            400, json=["ERROR_RANGE_EXCEED_TOTAL", "Provided range exceed total count of data: 3"]
        )
    )
    src = source(tmp_path)
    result = search_page(src.session, SCOPE, 200, 100)
    assert result.rows == [] and result.total == 0


@respx.mock
def test_other_4xx_fail_fast_with_glpi_message_and_429_waits(tmp_path: Path) -> None:
    init_route()
    route = respx.get(f"{BASE}/search/Ticket").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json=["ERROR", "slow"]),
            httpx.Response(503),
            httpx.Response(401, json=["ERROR_RIGHT_MISSING", "You don't have permission"]),
        ]
    )
    waits: list[float] = []
    src = source(tmp_path, waits)
    with pytest.raises(FatalError) as err:
        search_page(src.session, SCOPE, 0, 10)
    assert "ERROR_RIGHT_MISSING: You don't have permission" in str(err.value)
    assert route.call_count == 3 and waits[0] == 7.0
    assert "usr-tok" not in str(err.value) and "sess-1" not in str(err.value)


@respx.mock
def test_probe_names_a_wrong_app_token_and_a_wrong_url(tmp_path: Path) -> None:
    respx.get(f"{BASE}/initSession").mock(
        return_value=httpx.Response(400, json=["ERROR_WRONG_APP_TOKEN_PARAMETER", "wrong"])
    )
    with pytest.raises(FatalError, match="app_token is wrong"):
        source(tmp_path).probe()
    respx.get(f"{BASE}/initSession").mock(return_value=httpx.Response(404, text="Not Found"))
    with pytest.raises(FatalError, match="base_url must be GLPI's legacy API root") as err:
        source(tmp_path).probe()
    assert err.value.attrs.get("status") == 404
    respx.get(f"{BASE}/initSession").mock(
        side_effect=httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]")
    )
    with pytest.raises(FatalError, match=r"TLS.*set verify_tls to the path of the CA bundle"):
        source(tmp_path).probe()
    respx.get(f"{BASE}/initSession").mock(
        return_value=httpx.Response(400, json=["ERROR", "API disabled"])
    )
    with pytest.raises(FatalError, match="enable it in Setup > General > API"):
        source(tmp_path).probe()
    respx.get(f"{BASE}/initSession").mock(
        return_value=httpx.Response(401, json=["ERROR_GLPI_LOGIN_USER_TOKEN", "seems invalid"])
    )
    with pytest.raises(FatalError, match="user_token is refused") as err:
        source(tmp_path).probe()
    assert "usr-tok" not in str(err.value)


def test_content_range_parsing() -> None:
    assert parse_content_range("0-199/1234") == (0, 199, 1234)
    assert parse_content_range("0--1/0") == (0, -1, 0)
    assert parse_content_range("bytes */0") is None and parse_content_range(None) is None


def test_html_entities_are_decoded() -> None:
    assert decode_text("L&#039;imprimante &amp; le VPN") == "L'imprimante & le VPN"
    assert decode_text("already raw <b>") == "already raw <b>"
    assert html_to_text("&lt;p&gt;Bourrage&lt;/p&gt;&lt;p&gt;2e &#233;tage&lt;/p&gt;") == (
        "Bourrage\n2e étage"
    )


def test_naive_times_across_the_dst_end() -> None:
    clock = ServerClock(PARIS)
    assert clock.parse("2026-07-01 12:00:00") == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert clock.parse("2026-12-01 12:00:00") == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    first = clock.parse("2026-10-25 02:40:00")
    assert first == datetime(2026, 10, 25, 0, 40, tzinfo=UTC)
    # the same naive hour again after the clocks went back: later than the known instant
    assert clock.parse("2026-10-25 02:20:00", not_before=first) == datetime(
        2026, 10, 25, 1, 20, tzinfo=UTC
    )
    assert clock.parse("0000-00-00 00:00:00") is None and clock.parse(None) is None
    with pytest.raises(InputError):
        clock.parse("yesterday")
    # the criterion for "since 00:50 UTC" must reach the repeated 02:xx CET times
    assert clock.lower_bound(datetime(2026, 10, 25, 0, 50, tzinfo=UTC)) == "2026-10-25 01:50:00"
    assert clock.lower_bound(datetime(2026, 7, 1, 10, 0, tzinfo=UTC)) == "2026-07-01 12:00:00"
    assert clock.upper_bound(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == "2026-10-25 03:30:00"


def test_cursor_round_trip_and_errors() -> None:
    watermark = to_ms(datetime(2026, 10, 1, tzinfo=UTC))
    cur = Cursor(watermark, {"5": watermark - 1000}, 300_000, {"5": "ab"})
    again = Cursor.decode(cur.encode(), 300, "here")
    assert again.updated_ms == watermark and again.seen == {"5": watermark - 1000}
    assert again.digests == {"5": "ab"}
    assert Cursor.decode("2026-10-01T00:00:00+00:00", 300, "here").updated_ms == watermark
    with pytest.raises(StateError, match="here"):
        Cursor.decode('{"w": 5}', 300, "here")
    with pytest.raises(StateError, match="here"):
        Cursor.decode('{"w": "2026-10-01T00:00:00+00:00", "seen": {"5": []}}', 300, "here")


@respx.mock
def test_retriable_after_the_last_attempt(tmp_path: Path) -> None:
    init_route()
    respx.get(f"{BASE}/Ticket/9").mock(return_value=httpx.Response(502))
    with pytest.raises(RetriableError):
        source(tmp_path).ticket_status("9")


@respx.mock
def test_an_unmappable_ticket_is_rejected_naming_it_and_the_pull_goes_on(tmp_path: Path) -> None:
    """A ticket the mapping refuses goes in the batch's ``rejected``; the next one is delivered."""
    init_route()
    bad = {"2": 41, "1": "t41", "19": "2026-10-01 10:00:00", "15": "2026-10-01 09:00:00",
           "12": 2, "3": 9}  # fmt: skip
    good = {**bad, "2": 42, "1": "t42", "19": "2026-10-01 10:00:05", "3": 3}
    empty = httpx.Response(200, json={"totalcount": 0, "count": 0})
    respx.get(f"{BASE}/search/Ticket", params__contains={"is_deleted": "1"}).mock(
        return_value=empty
    )  # an empty trash
    respx.get(f"{BASE}/search/Ticket").mock(return_value=page([bad, good], 0, 2, 200))
    logs = [{"id": 41, "_logs": {}}, {"id": 42, "_logs": []}]  # with_logs: none yet
    respx.get(f"{BASE}/getMultipleItems").mock(return_value=httpx.Response(200, json=logs))
    respx.get(url__regex=rf"{BASE}/Ticket/4[12]/.*").mock(return_value=httpx.Response(200, json=[]))
    batches = list(source(tmp_path).pull(None))
    records = [r for b in batches for r in b.records]
    rejected = [r for b in batches for r in b.rejected]
    assert [r.external_id for r in records] == ["42"]
    assert [r.key for r in rejected] == ["41"]
    assert "glpi: record 41" in rejected[0].error and "priority 9" in rejected[0].error
    assert rejected[0].updated_at == datetime(2026, 10, 1, 8, 0, tzinfo=UTC)  # Paris, CEST
    cursor = Cursor.decode(batches[-1].cursor, 300, "here")
    assert set(cursor.seen) == {"41", "42"}  # the same version is not rejected again


@respx.mock
def test_a_server_that_pages_forever_is_stopped_by_the_kits_loop_guard(tmp_path: Path) -> None:
    """206 "more remain" for ever, the same rows whatever the range, no total: the scan
    stops at the kit's LoopGuard bound with a FatalError naming the source."""
    init_route()
    endless = httpx.Response(206, json={"data": [row(1, "2026-10-01 10:00:00")]})
    route = respx.get(f"{BASE}/search/Ticket").mock(return_value=endless)
    respx.get(f"{BASE}/killSession").mock(return_value=httpx.Response(200, json=True))
    src = source(tmp_path)
    try:
        with pytest.raises(
            FatalError, match=r"sources\.glpi: GET /search/Ticket: more than 5 pages"
        ):
            list(scan(src.session, None, None, 1, max_pages=5))
    finally:
        src.close()
    assert route.call_count == 5
