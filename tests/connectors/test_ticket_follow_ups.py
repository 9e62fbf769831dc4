"""Comments and resolution of qloop's tickets in the Jira and GLPI fakes (SPEC §10).

A changed finding is written to its ticket as a comment, once per key
however often the call is retried; a withdrawn finding's ticket is
commented and resolved (Jira: a transition to a done-category status,
GLPI: a solution), and a ticket already done is left as it is.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import mappings
from connectors.glpi import GlpiSource
from connectors.jira_sm import JiraSource
from connectors.jira_sm.tickets import adf_text
from core.connector import ConnectorContext
from core.errors import FatalError
from core.records import Category, TicketComment, TicketRequest
from tests.connectors.test_glpi_sync import make_source
from tests.connectors.test_jira_sm_tickets import request
from tests.fakes.glpi import FakeGlpi
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve

OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(issues=6)
    with serve(fake.app) as url:
        fake.server_url = url
        yield fake, url


def jira_source(state: Path, url: str, **ticket: Any) -> JiraSource:
    ctx = ConnectorContext(state, mappings.load("jira_sm"), sleep=lambda _: None)
    opts = source_options(url)
    opts["ticket"] = {**opts.get("ticket", {"project": "QA"}), **ticket}
    src = JiraSource("jira", opts, ctx)
    OPENED.append(src)
    return src


CHANGED = TicketComment(
    key="qloop:jira:10011:low_satisfaction@2026-10-05T10:29:43+00:00#comment-r2",
    text="qloop updated this nonconformity (low_satisfaction, revision 2).\n"
    "severity: minor → major\nWhy: survey score 1 is below 4",
)
GONE = TicketComment(
    key="qloop:jira:10011:callback_missed@2026-10-05T10:29:43+00:00#resolve-r2",
    text="qloop withdrew this nonconformity: the finding no longer holds.\n"
    "Why: outcomes collected since then make the callback verdict on_time",
)


def test_jira_comments_a_ticket_once_per_key(tmp_path: Path, jira: tuple[FakeJira, str]) -> None:
    fake, url = jira
    src = jira_source(tmp_path, url)
    ref = src.create_ticket(request()).ref
    first = src.comment_ticket(ref, CHANGED)
    again = src.comment_ticket(ref, CHANGED)  # a retry after a lost reply
    (issue,) = fake.tickets()
    assert first == again and len(issue.comments) == 1
    text = adf_text(issue.comments[0]["body"])
    assert "severity: minor → major" in text and CHANGED.marker in text
    assert fake.issues[ref].status == "Open"


def test_jira_resolves_a_withdrawn_ticket_by_a_done_transition(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    src = jira_source(tmp_path, url)
    ref = src.create_ticket(request()).ref
    assert src.resolve_ticket(ref, GONE) == "Resolved"  # the first transition to done
    assert src.ticket_status(ref).category == Category.RESOLVED
    assert src.resolve_ticket(ref, GONE) == "Resolved"  # done already: left as it is
    issue = fake.issues[ref]
    assert len(issue.comments) == 1 and "on_time" in adf_text(issue.comments[0]["body"])
    moves = [i["toString"] for h in issue.histories for i in h["items"] if i["field"] == "status"]
    assert moves == ["Resolved"]


def test_jira_resolve_transition_is_configurable_by_name(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    src = jira_source(tmp_path, url, resolve_transition="close issue")
    ref = src.create_ticket(request()).ref
    assert src.resolve_ticket(ref, GONE) == "Closed"
    assert fake.issues[ref].status == "Closed"


def test_jira_unknown_resolve_transition_names_the_option(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    _, url = jira
    src = jira_source(tmp_path, url, resolve_transition="Ship it")
    ref = src.create_ticket(request()).ref
    with pytest.raises(FatalError, match=r"ticket\.resolve_transition.*Ship it.*Resolve Issue"):
        src.resolve_ticket(ref, GONE)


def test_the_jira_fake_refuses_a_transition_it_does_not_offer(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    src = jira_source(tmp_path, url)
    ref = src.create_ticket(request()).ref
    with pytest.raises(FatalError, match=r"400.*Transition id '99' is not valid"):
        src._desk().client.transition(ref, "99")
    with pytest.raises(FatalError, match=r"400.*Transition id '41' is not valid"):
        src._desk().client.transition(ref, "41")  # Reopen: it is Open already
    assert fake.issues[ref].status == "Open"


@pytest.fixture
def glpi() -> Iterator[tuple[FakeGlpi, str]]:
    fake = FakeGlpi()
    fake.generate(4)
    with serve(fake.app()) as url:
        yield fake, f"{url}/apirest.php"


def glpi_ticket(src: GlpiSource) -> str:
    raised = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
    req = TicketRequest(
        "qloop:glpi:4:callback_missed@2026-10-26T20:02:44+00:00", "[QA] callback_missed on 4",
        "Callback missed.", "4", "4", "callback_missed", "major", raised,
        raised + timedelta(days=14),
    )  # fmt: skip
    return src.create_ticket(req).ref


def test_glpi_writes_a_followup_once_per_key(tmp_path: Path, glpi: tuple[FakeGlpi, str]) -> None:
    fake, url = glpi
    src = make_source(tmp_path, url)
    OPENED.append(src)
    ref = glpi_ticket(src)
    first = src.comment_ticket(ref, CHANGED)
    assert src.comment_ticket(ref, CHANGED) == first  # a retry after a lost reply
    (followup,) = [f for f in fake.followups if f["items_id"] == int(ref)]
    assert "severity: minor → major" in html.unescape(html.unescape(followup["content"]))
    assert fake.tickets[int(ref)]["status"] == 1


def test_glpi_solves_a_withdrawn_ticket_once(tmp_path: Path, glpi: tuple[FakeGlpi, str]) -> None:
    fake, url = glpi
    src = make_source(tmp_path, url)
    OPENED.append(src)
    ref = glpi_ticket(src)
    assert src.resolve_ticket(ref, GONE) == "Solved"
    assert fake.tickets[int(ref)]["status"] == 5
    assert src.ticket_status(ref).is_done
    assert src.resolve_ticket(ref, GONE) == "Solved"  # solved already: left as it is
    assert len([f for f in fake.followups if f["items_id"] == int(ref)]) == 1
    solutions = [s for s in fake.solutions if s["items_id"] == int(ref)]
    assert len(solutions) == 1 and "on_time" in html.unescape(solutions[0]["content"])


def test_the_glpi_fake_refuses_a_solution_on_a_closed_ticket(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    src = make_source(tmp_path, url)
    OPENED.append(src)
    ref = glpi_ticket(src)
    fake.close(int(ref))
    body = {"input": {"itemtype": "Ticket", "items_id": int(ref), "content": "again"}}
    with pytest.raises(FatalError, match="ERROR_GLPI_ADD"):
        src.session.post("/ITILSolution", body, once=True)
    assert src.resolve_ticket(ref, GONE) == "Closed"  # qloop does not try
