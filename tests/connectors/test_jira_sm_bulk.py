"""jira_sm without a call per issue: SLA cycles from the search page, changelog only if cut.

Every test runs a real pull against the fake Jira (tests/fakes/jira.py) and
counts the requests it served.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mappings
from connectors.jira_sm import JiraSource
from connectors.jira_sm.issues import sla_field_ids, sla_summary
from core.connector import ConnectorContext
from core.records import IncidentRecord
from tests.fakes.jira import SLA_FIELDS, FakeJira, source_options
from tests.fakes.server import serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    # no busy issue: no changelog is cut, so a page carries everything
    jira = FakeJira(issues=50, busy_every=0)
    with serve(jira.app) as url:
        jira.server_url = url
        yield jira, url


def pull_all(state: Path, url: str, **options: Any) -> list[IncidentRecord]:
    ctx = ConnectorContext(state, mappings.load("jira_sm"), sleep=lambda s: None)
    src = JiraSource("jira", source_options(url, **options), ctx)
    try:
        return [r for batch in src.pull(None) for r in batch.records]
    finally:
        src.close()


def routes(jira: FakeJira) -> Counter[str]:
    out: Counter[str] = Counter()
    for method, path in jira.log:
        parts = path.split("/")
        if len(parts) > 5 and parts[-2].startswith("ITSD-"):
            parts[-2] = "{key}"  # …/issue/{key}/changelog, …/request/{key}/sla
        out[f"{method} {'/'.join(parts)}"] += 1
    return out


def test_fifty_issues_cost_the_field_lookup_and_the_pages_only(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    records = pull_all(tmp_path, url, page_size=20)
    assert len(records) == 50
    assert routes(jira) == {"GET /rest/api/3/field": 1, "POST /rest/api/3/search/jql": 3}
    # the SLA verdicts are there all the same, parsed from the pages
    with_sla = [r for r in records if r.source_sla]
    assert len(with_sla) == 50


def test_sla_from_the_search_page_equals_the_sla_endpoint(
    tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    jira, url = fake
    jira.sla_now = max(i.updated for i in jira.issues.values())  # some ongoing cycles breach
    from_fields = {r.key: r.source_sla for r in pull_all(tmp_path / "a", url)}
    jira.sla_fields = False  # an older site: /field lists no SLA field, the fallback runs
    jira.log.clear()
    from_endpoint = {r.key: r.source_sla for r in pull_all(tmp_path / "b", url)}
    assert routes(jira)["GET /rest/servicedeskapi/request/{key}/sla"] == 50
    assert from_fields == from_endpoint
    breached = [k for k, sla in from_fields.items() if any(v for v in sla.values() if v is True)]
    assert breached  # the comparison is not between two empty maps
    # and the summary of a field value is the summary of the endpoint's metric
    issue = next(iter(jira.issues.values()))
    metrics = jira._sla_metrics(issue)
    values = [jira._sla_field(metrics, m) for m in SLA_FIELDS.values()]
    assert sla_summary([v for v in values if v]) == sla_summary(metrics)


def test_a_failed_field_lookup_falls_back_to_one_sla_call_per_issue(
    tmp_path: Path, fake: tuple[FakeJira, str], caplog: pytest.LogCaptureFixture
) -> None:
    jira, url = fake
    jira.app.router.routes.insert(0, _forbidden_field_route())
    with caplog.at_level(logging.WARNING):
        records = pull_all(tmp_path, url)
    assert len(records) == 50 and all(r.source_sla for r in records)
    counts = routes(jira)
    assert counts["GET /rest/servicedeskapi/request/{key}/sla"] == 50
    assert "GET /rest/api/3/field failed" in caplog.text


def test_only_a_truncated_changelog_costs_a_call(tmp_path: Path) -> None:
    jira = FakeJira(issues=50)  # expand_cap 40: the busy issues' changelogs are cut
    cut = {k for k, i in jira.issues.items() if len(i.histories) > jira.expand_cap}
    assert 0 < len(cut) < 50
    with serve(jira.app) as url:
        jira.server_url = url
        records = pull_all(tmp_path, url, page_size=50)
    assert len(records) == 50
    counts = routes(jira)
    assert counts["GET /rest/api/3/issue/{key}/changelog"] == len(cut)
    asked = {p.split("/")[-2] for m, p in jira.log if p.endswith("/changelog")}
    assert asked == cut
    assert counts["GET /rest/servicedeskapi/request/{key}/sla"] == 0
    # the cut histories were read in full
    for record in records:
        if record.key in cut:
            moves = jira.issues[record.key].status_changes()
            assert len(record.history) == len(moves), record.key


def test_sla_field_ids_are_found_by_their_schema() -> None:
    fields = [
        {"id": "summary", "schema": {"type": "string", "system": "summary"}},
        {
            "id": "customfield_10030",
            "schema": {
                "type": "sd-servicelevelagreement",
                "custom": "com.atlassian.servicedesk:sd-sla-field",
                "customId": 10030,
            },
        },
        {"id": "customfield_1", "schema": {"type": "string", "custom": "other"}},
        {"id": "customfield_10099", "schema": {"custom": "com.atlassian.servicedesk:sla-field"}},
        {"id": "odd", "schema": None},
    ]
    assert sla_field_ids(fields) == ("customfield_10030", "customfield_10099")


def _forbidden_field_route() -> Any:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def refuse(request: Any) -> JSONResponse:
        body = {"errorMessages": ["You are not allowed to view fields."], "errors": {}}
        return JSONResponse(body, status_code=403)

    return Route("/rest/api/3/field", refuse)
