"""jira_sm write-back and probe on the fake Jira: one ticket under retry, closure, failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import mappings
from connectors.jira_sm import JiraSource
from connectors.jira_sm.tickets import PROPERTY, dedup_label
from core.connector import ConnectorContext
from core.errors import FatalError
from core.records import Category, TicketRequest
from core.retry import call_with_retry, make_retrying
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    jira = FakeJira(issues=12)
    with serve(jira.app) as url:
        jira.server_url = url
        yield jira, url


OPENED: list[JiraSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def source(state: Path, url: str, waits: list[float] | None = None, **options: Any) -> JiraSource:
    sleep = (waits if waits is not None else []).append
    ctx = ConnectorContext(state, mappings.load("jira_sm"), sleep=sleep)
    src = JiraSource("jira", source_options(url, **options), ctx)
    OPENED.append(src)
    return src


def request(
    key: str = "qloop:jira:10011:callback_missed:2026-10-05T10:29:43+00:00",
) -> TicketRequest:
    at = datetime(2026, 10, 6, 2, 0, tzinfo=UTC)
    return TicketRequest(
        dedup_key=key,
        title="[QA] callback_missed on ITSD-5 (major)",
        description="qloop raised a major nonconformity on ITSD-5.\n\n回访未完成 — please rectify.",
        incident_external_id="10011",
        incident_key="ITSD-5",
        rule="callback_missed",
        severity="major",
        raised_at=at,
        deadline=at + timedelta(days=14),
        labels=("qloop", "qloop-callback_missed"),
    )


def test_a_create_retried_after_a_lost_reply_makes_one_ticket(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    jira.fail_create_replies = 1  # the issue is stored, the reply is a 500
    jira.index_lag = 2  # and the search does not see it at once
    waits: list[float] = []
    src = source(tmp_path / "a", url, waits)
    retrying = make_retrying(sleep=waits.append)
    ref = call_with_retry(lambda: src.create_ticket(request()), retrying)
    assert len(jira.tickets()) == 1
    ticket = jira.tickets()[0]
    assert ref.ref == ticket.key and ref.url == f"{url}/browse/{ticket.key}"
    assert ticket.properties[PROPERTY]["dedup_key"] == request().dedup_key
    assert dedup_label(request().dedup_key) in ticket.labels and "qloop-nc" in ticket.labels
    assert ticket.links == [{"type": {"name": "Relates"}, "outwardIssue": {"key": "ITSD-5"}}]
    assert ticket.description["content"][1]["content"][0]["text"] == "回访未完成 — please rectify."
    assert [p for m, p in jira.log if m == "POST"].count("/rest/api/3/issue") == 1

    # the same request again, here and from a process with another state directory
    assert src.create_ticket(request()).ref == ticket.key
    other = source(tmp_path / "b", url)
    assert other.create_ticket(request()).ref == ticket.key
    assert len(jira.tickets()) == 1
    assert other.create_ticket(request("another-key")).ref != ticket.key
    assert len(jira.tickets()) == 2


def test_ticket_status_follows_the_issue_until_it_is_done(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    src = source(tmp_path, url)
    ref = src.create_ticket(request()).ref
    status = src.ticket_status(ref)
    assert (status.status, status.category, status.is_done) == ("Open", Category.NEW, False)
    jira.set_status(ref, "In Progress", datetime(2026, 10, 7, 1, 0, tzinfo=UTC))
    assert src.ticket_status(ref).category == Category.IN_PROGRESS
    done_at = datetime(2026, 10, 8, 9, 30, 15, tzinfo=UTC)
    jira.set_status(ref, "Done", done_at)
    status = src.ticket_status(ref)
    assert status.is_done and status.status == "Done" and status.closed_at == done_at
    with pytest.raises(FatalError, match="404"):
        src.ticket_status("QA-999")


def test_a_refused_create_fails_fast_with_jira_field_errors(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    src = source(tmp_path, url, ticket={"project": "QA", "link_type": "Mentions"})
    with pytest.raises(FatalError, match="No issue link type with name") as err:
        src.create_ticket(request())
    assert "HTTP 400" in str(err.value)
    assert jira.tickets() == []


def test_probe_reports_account_count_and_permission(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    _, url = fake
    lines = source(tmp_path, url).probe()
    assert "signed in as QA Robot 质检" in lines[0] and "Asia/Shanghai" in lines[0]
    assert "about 12 issues" in lines[1]
    assert "can create and link issues in project QA" in lines[2]


def test_probe_through_the_gateway_with_a_bearer_token(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    _, url = fake
    src = source(
        tmp_path,
        url,
        base_url=None,
        cloud_id="c0ffee",
        gateway_url=url,
        auth={"bearer_token": "bearer-xyz"},
    )
    assert "signed in" in src.probe()[0]
    assert sum(len(b.records) for b in src.pull(None)) == 12


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"auth": {"email": "ops@example.com", "api_token": "wrong-secret"}},
            "credentials refused",
        ),
        ({"base_url": "{url}/not-jira"}, r"not found \(404\)"),
        ({"jql": "project = NOPE"}, "rejected"),
        ({"ticket": {"project": "ZZZ"}}, "No project could be found"),
    ],
    ids=["bad-token-401", "wrong-url-404", "bad-jql-400", "unknown-project"],
)
def test_probe_failures_say_what_is_wrong(
    tmp_path: Path, fake: tuple[FakeJira, str], options: dict[str, Any], expected: str
) -> None:
    _, url = fake
    if "base_url" in options:
        options = {"base_url": options["base_url"].format(url=url)}
    with pytest.raises(FatalError, match=expected) as err:
        source(tmp_path, url, **options).probe()
    assert "wrong-secret" not in str(err.value) and "api-token-123" not in str(err.value)


def test_probe_names_a_missing_create_permission(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    jira.can_create["QA"] = False
    with pytest.raises(
        FatalError, match="missing permission CREATE_ISSUES, LINK_ISSUES in project QA"
    ):
        source(tmp_path, url).probe()


def test_probe_names_a_tls_failure(tmp_path: Path, fake: tuple[FakeJira, str]) -> None:
    _, url = fake
    https = url.replace("http://", "https://")  # the fake speaks plain HTTP: the handshake fails
    with pytest.raises(FatalError, match=r"TLS|SSL|ssl"):
        source(tmp_path, url, base_url=https).probe()
