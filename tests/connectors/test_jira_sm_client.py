"""jira_sm unit tests on respx: auth, token paging, retries, fail-fast 4xx, ADF, options, cursor."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import jsonschema
import pytest
import respx

import mappings
from connectors.jira_sm import JiraSource
from connectors.jira_sm.options import OPTIONS_SCHEMA
from connectors.jira_sm.search import DateFormat, window_jql
from connectors.jira_sm.tickets import PROPERTY, adf, dedup_label
from connectors.kit.cursor import Cursor
from core import registry
from core.connector import ConnectorContext, Probe, Source
from core.errors import ConfigError, FatalError, RetriableError, StateError
from core.records import TicketRequest

SITE = "https://acme.atlassian.net"
SEARCH = f"{SITE}/rest/api/3/search/jql"


def make(tmp_path: Path, waits: list[float] | None = None, **options: object) -> JiraSource:
    opts: dict[str, object] = {
        "base_url": SITE,
        "auth": {"email": "ops@acme.test", "api_token": "s3cr3t-tok"},
        "jql": "project = SUP",
        "rate": 0,
        "sla": False,
        "fetch_workers": 1,
        "ticket": {"project": "QA"},
    }
    opts.update(options)
    opts = {k: v for k, v in opts.items() if v is not None}
    sleep = (waits if waits is not None else []).append
    ctx = ConnectorContext(tmp_path, mappings.load("jira_sm"), sleep=sleep)
    return JiraSource("jira", opts, ctx)


def issue(key: str, updated: str, status: str = "Resolved") -> dict[str, object]:
    return {
        "id": key.split("-")[1],
        "key": key,
        "fields": {
            "summary": f"issue {key}",
            "status": {"name": status, "statusCategory": {"key": "done"}},
            "priority": {"name": "High"},
            "created": "2026-03-03T09:15:02.001+0100",
            "updated": updated,
            "reporter": {"displayName": "Jane Doe", "emailAddress": "jane@acme.test"},
        },
        "changelog": {"startAt": 0, "maxResults": 40, "total": 0, "histories": []},
    }


def test_registered_as_a_source_with_its_mapping(tmp_path: Path) -> None:
    entry = registry.get("source", "jira_sm")
    assert entry.factory is JiraSource and entry.mapping == "jira_sm"
    src = make(tmp_path)
    assert isinstance(src, Source) and isinstance(src, Probe)


@respx.mock
def test_basic_auth_on_the_site_url(tmp_path: Path) -> None:
    route = respx.get(f"{SITE}/rest/api/3/myself").respond(json={"timeZone": "UTC"})
    make(tmp_path).client.myself()
    sent = route.calls.last.request.headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"ops@acme.test:s3cr3t-tok").decode()


@respx.mock
def test_bearer_token_through_the_gateway_with_cloud_id(tmp_path: Path) -> None:
    gateway = "https://api.atlassian.com/ex/jira/abc-123"
    route = respx.get(f"{gateway}/rest/api/3/myself").respond(json={"timeZone": "UTC"})
    src = make(tmp_path, base_url=None, cloud_id="abc-123", auth={"bearer_token": "oauth-tok"})
    src.client.myself()
    assert route.calls.last.request.headers["Authorization"] == "Bearer oauth-tok"


def test_the_schema_validated_at_config_load_names_every_problem() -> None:
    base = {"auth": {"email": "a@b.c", "api_token": "hidden-value"}, "jql": "project = X"}
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    bad = {**base, "base_url": SITE, "cloud_id": "x", "page_size": 0}
    found = {(".".join(map(str, e.path)), e.validator) for e in validator.iter_errors(bad)}
    assert found == {("page_size", "minimum"), ("", "oneOf")}
    assert list(validator.iter_errors({**base, "base_url": SITE})) == []


def test_options_built_by_hand_name_the_key_and_hide_tokens(tmp_path: Path) -> None:
    ctx = ConnectorContext(tmp_path)
    base = {"auth": {"email": "a@b.c", "api_token": "hidden-value"}, "jql": "project = X"}
    with pytest.raises(ConfigError, match="exactly one of base_url or cloud_id"):
        JiraSource("j", {**base, "base_url": SITE, "cloud_id": "x"}, ctx)
    with pytest.raises(ConfigError, match=r"sources\.j\.page_size: expected an integer"):
        JiraSource("j", {**base, "base_url": SITE, "page_size": "20"}, ctx)
    with pytest.raises(ConfigError) as err:
        JiraSource("j", {**base, "base_url": SITE, "auth": {"api_token": "hidden-value"}}, ctx)
    assert "hidden-value" not in str(err.value) and "sources.j.auth" in str(err.value)
    with pytest.raises(ConfigError, match="overlap"):
        JiraSource("j", {**base, "base_url": SITE, "overlap": "soon"}, ctx)


@respx.mock
def test_paging_follows_tokens_and_stops_when_the_token_is_absent(tmp_path: Path) -> None:
    route = respx.post(SEARCH).mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "issues": [issue("SUP-1", "2026-03-03T10:00:00.000+0100")],
                    "nextPageToken": "t1",
                    "isLast": False,
                },
            ),
            httpx.Response(
                200,
                json={"issues": [issue("SUP-2", "2026-03-03T11:00:00.000+0100")], "isLast": True},
            ),
        ]
    )
    batches = list(make(tmp_path).pull(None))
    assert [r.key for b in batches for r in b.records] == ["SUP-1", "SUP-2"]
    bodies = [json.loads(c.request.content) for c in route.calls]
    assert "nextPageToken" not in bodies[0] and bodies[1]["nextPageToken"] == "t1"
    assert bodies[0]["jql"] == (
        '(project = SUP) AND (labels IS EMPTY OR labels NOT IN ("qloop-nonconformity")) '
        "ORDER BY updated ASC, key ASC"
    )
    assert set(bodies[0]["fields"]) >= {"summary", "status", "priority", "created", "updated"}
    assert bodies[0]["expand"] == "changelog"
    cursor = json.loads(batches[-1].cursor or "")
    assert cursor["w"] == "2026-03-03T10:00:00.000+00:00"
    assert cursor["seen"] == [["SUP-2", 1772532000000]]


@respx.mock
def test_paging_stops_on_an_empty_page_even_with_a_token(tmp_path: Path) -> None:
    route = respx.post(SEARCH).respond(json={"issues": [], "nextPageToken": "again"})
    assert list(make(tmp_path).pull(None)) == []
    assert route.call_count == 1


@respx.mock
def test_a_repeated_page_token_is_an_error_not_a_loop(tmp_path: Path) -> None:
    page = {"issues": [issue("SUP-1", "2026-03-03T10:00:00.000+0100")], "nextPageToken": "same"}
    route = respx.post(SEARCH).respond(json=page)
    with pytest.raises(FatalError, match="paging loop"):
        list(make(tmp_path).pull(None))
    assert route.call_count == 2


@respx.mock
def test_429_waits_retry_after_in_seconds_and_as_an_http_date(tmp_path: Path) -> None:
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    respx.get(f"{SITE}/rest/api/3/myself").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"errorMessages": ["slow"]}),
            httpx.Response(503, headers={"Retry-After": date}),
            httpx.Response(200, json={"displayName": "bot", "timeZone": "UTC"}),
        ]
    )
    waits: list[float] = []
    assert make(tmp_path, waits).client.myself()["displayName"] == "bot"
    assert waits[0] == 7.0 and 15 <= waits[1] <= 20


@respx.mock
def test_a_4xx_fails_fast_with_jira_messages(tmp_path: Path) -> None:
    body = {"errorMessages": ["Field 'x' does not exist."], "errors": {"jql": "bad clause"}}
    route = respx.post(SEARCH).respond(400, json=body)
    with pytest.raises(FatalError) as err:
        list(make(tmp_path).pull(None))
    assert route.call_count == 1
    assert "HTTP 400" in str(err.value) and "Field 'x' does not exist." in str(err.value)
    assert "jql: bad clause" in str(err.value) and "s3cr3t" not in str(err.value)


@respx.mock
def test_truncated_changelog_is_read_in_full_from_the_changelog_endpoint(tmp_path: Path) -> None:
    truncated = issue("SUP-9", "2026-03-03T15:00:00.000+0100")
    truncated["changelog"] = {"startAt": 0, "maxResults": 1, "total": 3, "histories": [{}]}
    respx.post(SEARCH).respond(json={"issues": [truncated]})

    def history(n: int, to: str, frm: str) -> dict[str, object]:
        item = {"field": "status", "fieldId": "status", "fromString": frm, "toString": to}
        return {"id": str(n), "created": f"2026-03-03T1{n}:00:00.000+0100", "items": [item]}

    pages = respx.get(f"{SITE}/rest/api/3/issue/SUP-9/changelog").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "values": [
                        history(1, "In Progress", "Open"),
                        history(2, "Resolved", "In Progress"),
                    ],
                    "total": 3,
                    "isLast": False,
                },
            ),
            httpx.Response(
                200, json={"values": [history(3, "Closed", "Resolved")], "total": 3, "isLast": True}
            ),
        ]
    )
    (rec,) = [r for b in make(tmp_path).pull(None) for r in b.records]
    assert pages.call_count == 2
    assert [h.status for h in rec.history] == ["Open", "In Progress", "Resolved", "Closed"]
    assert rec.resolved_at == datetime(2026, 3, 3, 11, 0, tzinfo=UTC)


@respx.mock
def test_create_sends_adf_labels_property_and_link(tmp_path: Path) -> None:
    respx.post(SEARCH).respond(json={"issues": []})
    create = respx.post(f"{SITE}/rest/api/3/issue").respond(
        201, json={"id": "10900", "key": "QA-7", "self": f"{SITE}/rest/api/3/issue/10900"}
    )
    at = datetime(2026, 3, 4, tzinfo=UTC)
    req = TicketRequest(
        "qloop:jira:10482:low_satisfaction:1",
        "Low score on SUP-1287",
        "Score 2/5.\nCustomer unhappy.\n\nRectify by Friday.",
        "10482",
        "SUP-1287",
        "low_satisfaction",
        "major",
        at,
        at + timedelta(days=14),
        labels=("qloop", "severity major"),
    )
    ref = make(tmp_path).create_ticket(req)
    assert ref.ref == "QA-7" and ref.url == f"{SITE}/browse/QA-7"
    body = json.loads(create.calls.last.request.content)
    fields = body["fields"]
    assert fields["description"] == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Score 2/5."},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "Customer unhappy."},
                ],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "Rectify by Friday."}]},
        ],
    }
    assert fields["labels"] == [
        "qloop", "severity-major", "qloop-nonconformity", dedup_label(req.dedup_key)
    ]  # fmt: skip
    assert fields["project"] == {"key": "QA"} and fields["issuetype"] == {"name": "Task"}
    assert body["properties"][0]["key"] == PROPERTY
    assert body["properties"][0]["value"]["dedup_key"] == req.dedup_key
    link = body["update"]["issuelinks"][0]["add"]
    assert link == {"type": {"name": "Relates"}, "outwardIssue": {"key": "SUP-1287"}}


def test_adf_of_empty_text_is_still_a_valid_document() -> None:
    assert adf("  ") == {"type": "doc", "version": 1, "content": [{"type": "paragraph"}]}


def test_date_literals_epoch_ms_and_profile_zone_minutes() -> None:
    at = datetime(2026, 3, 3, 7, 59, 30, 123456, tzinfo=UTC)
    assert DateFormat().literal(at) == "1772524770123"
    shanghai = DateFormat(ZoneInfo("Asia/Shanghai"))
    assert shanghai.literal(at) == '"2026-03-03 15:59"'
    assert shanghai.floor(at) == datetime(2026, 3, 3, 7, 59, tzinfo=UTC)
    jql = window_jql("project = SUP", shanghai, at, at + timedelta(hours=1))
    assert jql == (
        '(project = SUP) AND (labels IS EMPTY OR labels NOT IN ("qloop-nonconformity")) '
        'AND updated >= "2026-03-03 15:59" AND updated < "2026-03-03 16:59" '
        "ORDER BY updated ASC, key ASC"
    )


def test_a_wall_time_in_a_dst_fold_steps_back_to_an_unambiguous_minute() -> None:
    ny = DateFormat(ZoneInfo("America/New_York"))
    second_one_thirty = datetime(2026, 11, 1, 6, 30, 10, tzinfo=UTC)  # 01:30 EST, after the fold
    floor = ny.floor(second_one_thirty)
    assert floor <= second_one_thirty
    assert ny.literal(second_one_thirty) == '"2026-11-01 00:30"'


def test_cursor_round_trip_and_foreign_cursor_is_refused() -> None:
    mark = Cursor(overlap_ms=120_000)
    mark.add("SUP-1", 1_000_000)
    mark.add("SUP-2", 1_100_000)
    mark.add("SUP-3", 1_200_000)
    again = Cursor.decode(mark.encode(), 120, "sources.j")
    assert again.updated_ms == 1_200_000
    assert again.seen == {"SUP-2": 1_100_000, "SUP-3": 1_200_000}  # SUP-1 is outside the overlap
    assert again.since() == datetime.fromtimestamp(1_080, UTC)
    with pytest.raises(StateError, match=r"sources\.j"):
        Cursor.decode("page-token-abc", 120, "sources.j")


@respx.mock
def test_a_cursor_stored_before_the_kit_resumes_where_it_was(tmp_path: Path) -> None:
    """The jira_sm cursor of old (``updated``, not ``w``) is not a reason to pull everything."""
    route = respx.post(SEARCH).respond(
        json={"issues": [issue("SUP-2", "2026-03-03T11:00:00.000+0100")], "isLast": True}
    )
    old = '{"v":1,"updated":"2026-03-03T10:00:00.000+00:00","seen":[["SUP-2",1772532000000]]}'
    batches = list(make(tmp_path).pull(old))
    assert [r.key for b in batches for r in b.records] == []  # SUP-2's version was seen
    jql = json.loads(route.calls.last.request.content)["jql"]
    since = int(datetime(2026, 3, 3, 9, 58, tzinfo=UTC).timestamp() * 1000)
    assert f"updated >= {since}" in jql  # watermark − 2 min overlap


@respx.mock
def test_retriable_create_failure_is_raised_for_the_caller_to_retry(tmp_path: Path) -> None:
    respx.post(SEARCH).respond(json={"issues": []})
    create = respx.post(f"{SITE}/rest/api/3/issue").respond(502)
    at = datetime(2026, 3, 4, tzinfo=UTC)
    req = TicketRequest("k", "t", "d", "1", "SUP-1", "r", "minor", at, at)
    with pytest.raises(RetriableError):
        make(tmp_path).create_ticket(req)
    assert create.call_count == 1  # never re-posted in-call: the reply may have been lost
