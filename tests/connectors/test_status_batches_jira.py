"""Jira issue states of many tickets read with one JQL ``key in`` search, on the fake.

The batch read (:meth:`JiraSource.ticket_statuses`) must answer what one
:meth:`ticket_status` per issue answers — same status, category and closing
time — with a search per 100 issues instead of a GET per issue; a page boundary
inside a batch and a 429 lose nothing. A key naming no issue (deleted) fails
Jira's JQL whole (400): that chunk is searched again by halves down to the
missing issue, which is read alone and gets the single read's 404, the others
still read by batch; an issue the search does not return yet (index lag) is
read alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

import mappings
from connectors.jira_sm import JiraSource
from connectors.jira_sm import tickets as jira_tickets
from core.connector import ConnectorContext, TicketStatusBatches
from core.errors import FatalError, RetriableError
from core.loop.track import _statuses
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve
from tests.utils.batch_reads import answers, assert_same, read_both, retrying_runtime

T0 = datetime(2026, 10, 20, 8, tzinfo=UTC)
STATES = ["Open", "In Progress", "Resolved", "Closed", "Canceled", "Done", "Triage",
          "Waiting for customer"]  # fmt: skip


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    jira = FakeJira(issues=20)
    with serve(jira.app) as url:
        jira.server_url = url
        yield jira, url


def jira_source(tmp_path: Path, url: str) -> JiraSource:
    ctx = ConnectorContext(tmp_path, mappings.load("jira_sm"), sleep=lambda _: None)
    return JiraSource("jira", source_options(url), ctx)


def _keys(jira: FakeJira) -> list[str]:
    """The fake's issues, moved through every status (Triage: outside the status map)."""
    keys = sorted(jira.issues, key=lambda k: int(k.rsplit("-", 1)[1]))
    for n, key in enumerate(keys):
        jira.set_status(key, STATES[n % len(STATES)], T0 + timedelta(minutes=n))
    return keys


def test_the_batch_read_answers_what_one_read_per_issue_answers(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    keys = _keys(jira)
    asked = [*keys, keys[2]]  # an issue asked twice
    src = jira_source(tmp_path, url)
    try:
        assert isinstance(src, TicketStatusBatches)
        many, batch_calls, singles, single_calls = read_both(
            lambda: jira.requests, src.ticket_statuses, src.ticket_status, asked
        )
    finally:
        src.close()
    assert_same(many, singles)
    cats = [s.category for s in many[:8]]  # type: ignore[union-attr]
    assert cats[:3] == ["new", "in_progress", "resolved"] and cats[6] == "new"  # Triage: new
    assert many[2].closed_at is not None  # type: ignore[union-attr]
    assert batch_calls == 1 and single_calls == len(asked)


def test_a_missing_issue_fails_alone_and_the_others_still_read(
    tmp_path: Path, fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    jira, url = fake
    keys = _keys(jira)
    monkeypatch.setattr(jira_tickets, "KEYS_PER_SEARCH", 8)
    gone = keys[3]
    del jira.issues[gone]  # deleted: JQL naming it answers 400 for the whole query
    src = jira_source(tmp_path, url)
    try:
        before = jira.requests
        many = src.ticket_statuses(keys)
        calls = jira.requests - before
        singles = answers(src.ticket_status, keys)
    finally:
        src.close()
    assert_same(many, singles)
    assert isinstance(many[3], FatalError) and many[3].attrs.get("status") == 404
    # 20 issues in chunks of 8: the first chunk's search fails (400) and is searched again
    # by halves: 0-3 (400) and 4-7, then 0-1 and 2-3 (400), then 2 and 3 (400); the
    # missing issue is read alone (404); the two other chunks are one search each
    assert calls == 1 + 2 + 2 + 2 + 1 + 2


def test_a_page_boundary_inside_a_batch_and_a_429_lose_nothing(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    keys = _keys(jira)
    src = jira_source(tmp_path, url)
    try:
        expected = answers(src.ticket_status, keys)
        jira.page_cap = 6  # Jira answers fewer than maxResults: nextPageToken pages
        jira.throttle = (2, 1, "1")  # every second request a 429 with Retry-After
        before = jira.searches
        assert_same(src.ticket_statuses(keys), expected)
        assert jira.searches - before == 4  # 20 issues, 6 a page (429s are not searches)
        assert jira.throttled >= 1
    finally:
        jira.throttle = None
        src.close()
    body_fields = ["status", "resolutiondate", "statuscategorychangedate"]
    assert list(jira_tickets.STATUS_FIELDS) == body_fields


def test_track_reads_a_lagging_issue_alone_and_a_refused_search_issue_by_issue(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    keys = _keys(jira)
    src = jira_source(tmp_path, url)
    rows = [SimpleNamespace(ticket_target="jira", ticket_ref=key) for key in keys]
    try:
        expected = dict(zip(keys, answers(src.ticket_status, keys), strict=True))
        lagging = jira.issues[keys[-1]]
        lagging.visible_from = jira.searches + 5  # just created: not in the index yet
        before = jira.requests
        assert _statuses(retrying_runtime({"jira": src}), rows) == expected
        assert jira.requests - before == 2  # the search, then the lagging issue alone
        lagging.visible_from = 0
        jira.throttle = (1, 1, "1")  # every answer a 429: the search fails, then each read
        found = _statuses(retrying_runtime({"jira": src}), rows[:2])
        assert all(isinstance(found[key], RetriableError) for key in keys[:2])
    finally:
        jira.throttle = None
        src.close()
