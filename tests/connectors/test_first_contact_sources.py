"""First contact with a real ITSM (SPEC §11), GLPI and Jira/JSM on their fakes, through pull.

A first sync without ``backfill_from`` reads every ticket in scope whatever
its status (GLPI applies Ticket's default "not solved" search to a search
without criteria), records the tool's own count and warns on a difference;
qloop's own nonconformity tickets are never ingested, whether the query,
the ticket's stamp or the ticket ledger catches them; a trashed GLPI ticket
is cancelled; JSM's SLA flag counts a breach in any cycle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

import connectors.glpi
import connectors.jira_sm  # noqa: F401
import mappings
from connectors.glpi import GlpiSource
from connectors.jira_sm import JiraSource
from connectors.jira_sm.issues import sla_summary
from connectors.jira_sm.tickets import OWN_LABEL
from core.connector import ConnectorContext
from core.errors import FatalError
from core.loop.pull import pull
from core.records import TicketRequest
from core.runtime import Runtime
from core.store.models import Incident, Nonconformity, StatusEvent, SyncRun
from tests.fakes.glpi import APP_TOKEN, USER_TOKEN, FakeGlpi
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve
from tests.utils.loop import Deployment, sandbox_config

MONTH = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


# -- helpers ------------------------------------------------------------------------


def glpi_options(url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": url, "app_token": APP_TOKEN, "user_token": USER_TOKEN,
            "server_timezone": "Europe/Paris", "page_size": 25, **extra}  # fmt: skip


def glpi_deployment(database_url: str, tmp_path: Path, url: str, **extra: Any) -> Deployment:
    doc = {
        "database_url": database_url,
        "timezone": "Europe/Paris",
        "state_dir": str(tmp_path / "state"),
        "calendars": {"fr": {"timezone": "Europe/Paris", "hours": {"mon-fri": "09:00-18:00"}}},
        "sources": {"glpi": {"type": "glpi", **glpi_options(url, **extra)}},
        "channels": {"phone": {"type": "sandbox", "role": "callback", "seed": "g"}},
        "policies": {
            "default": {
                "calendar": "fr",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
    }
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


def incidents(rt: Runtime, source: str) -> dict[str, Incident]:
    with rt.db.session() as s:
        rows = list(s.scalars(select(Incident).where(Incident.source == source)))
        s.expunge_all()
    return {i.external_id: i for i in rows}


def last_run(rt: Runtime, source: str) -> SyncRun:
    with rt.db.session() as s:
        run = s.scalars(
            select(SyncRun).where(SyncRun.connector == source).order_by(SyncRun.id.desc())
        ).first()
        assert run is not None
        s.expunge(run)
        return run


def ticket_request(incident_id: str, key: str, source: str) -> TicketRequest:
    raised = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
    return TicketRequest(
        dedup_key=f"qloop:{source}:{incident_id}:callback_missed@2026-10-26T20:02:44+00:00",
        title=f"[QA] callback_missed on {key} (major)",
        description="qloop raised a major nonconformity.\n\nPlease rectify.",
        incident_external_id=incident_id,
        incident_key=key,
        rule="callback_missed",
        severity="major",
        raised_at=raised,
        deadline=raised + timedelta(days=14),
        labels=("qloop",),
    )


def record_in_ledger(rt: Runtime, source: str, incident: Incident, ref: str) -> None:
    """The nonconformity whose ticket ``ref`` qloop created in ``source`` (the ticket ledger)."""
    now = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
    with rt.db.session() as s:
        s.add(
            Nonconformity(
                dedup_key=f"qloop:{source}:{incident.external_id}:callback_missed@x",
                incident_id=incident.id,
                rule="callback_missed",
                resolution_key="x",
                severity="major",
                raised_at=now,
                deadline=now + timedelta(days=14),
                detail="missed",
                policy="default",
                policy_version="v1",
                state="open",
                ticket_target=source,
                ticket_ref=ref,
                created_at=now,
                updated_at=now,
            )
        )


# -- GLPI -----------------------------------------------------------------------------


@pytest.fixture
def glpi() -> Iterator[tuple[FakeGlpi, str]]:
    fake = FakeGlpi()
    fake.generate(150, seed="month", start=MONTH, days=28)  # a month of history
    with serve(fake.app()) as url:
        yield fake, f"{url}/apirest.php"


def test_glpi_first_sync_reads_every_status_and_the_trash_and_records_the_count(
    database_url: str,
    tmp_path: Path,
    glpi: tuple[FakeGlpi, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = glpi
    trashed = [t for t in sorted(fake.tickets) if fake.tickets[t]["status"] == 2][:2]
    for ticket_id in trashed:  # trashed before qloop ever looked
        fake.trash(ticket_id)
    solved = sum(1 for t in fake.tickets.values() if t["status"] in (5, 6))
    assert solved > 50  # GLPI's default search would hide every one of them
    dep = glpi_deployment(database_url, tmp_path, url)  # no backfill_from
    try:
        rt = dep.open()
        with caplog.at_level(logging.WARNING, logger="qloop"):
            first = pull(rt, "glpi")
        assert first.counts["created"] == len(fake.tickets) == 150
        run = last_run(rt, "glpi")
        assert run.tool_count == 150 and run.skipped_own == 0
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [r for r in warned if "counts" in r.getMessage()]
        stored = incidents(rt, "glpi")
        for ticket_id in trashed:
            assert stored[str(ticket_id)].category == "cancelled"
            assert stored[str(ticket_id)].status == "Trashed"
        assert {i.category for i in stored.values()} >= {"resolved", "closed", "cancelled"}
        assert pull(rt, "glpi").counts["seen"] == 0
        assert last_run(rt, "glpi").tool_count is None  # counted after a first sync only
    finally:
        dep.close()


def test_glpi_first_sync_count_differs_loudly(
    database_url: str,
    tmp_path: Path,
    glpi: tuple[FakeGlpi, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = glpi
    count = GlpiSource.count_in_scope

    def late_ticket_then_count(self: GlpiSource) -> int | None:
        fake.open_ticket()  # a customer opens a ticket after the scan ended
        return count(self)

    monkeypatch.setattr(GlpiSource, "count_in_scope", late_ticket_then_count)
    dep = glpi_deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        with caplog.at_level(logging.WARNING, logger="qloop"):
            pull(rt, "glpi")
        assert last_run(rt, "glpi").tool_count == 151
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "pull glpi" in r.getMessage() and "read 150" in r.getMessage()
            and "counts 151" in r.getMessage()
            for r in warned
        ), [r.getMessage() for r in warned]  # fmt: skip
    finally:
        dep.close()


def test_glpi_trashed_after_the_pull_becomes_cancelled(
    database_url: str, tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    dep = glpi_deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        pull(rt, "glpi")
        open_one = next(t for t in sorted(fake.tickets) if fake.tickets[t]["status"] == 2)
        assert incidents(rt, "glpi")[str(open_one)].category == "in_progress"
        fake.advance(600)
        fake.trash(open_one)
        again = pull(rt, "glpi")
        assert again.counts["updated"] == 1
        inc = incidents(rt, "glpi")[str(open_one)]
        assert inc.category == "cancelled"
        with rt.db.session() as s:
            last = s.scalars(
                select(StatusEvent)
                .where(StatusEvent.incident_id == inc.id)
                .order_by(StatusEvent.seq.desc())
            ).first()
            assert last is not None and last.category == "cancelled"
            assert last.at.replace(tzinfo=UTC) == fake.now.replace(microsecond=0)
    finally:
        dep.close()


def test_glpi_never_ingests_its_own_tickets(
    database_url: str, tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    dep = glpi_deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        pull(rt, "glpi")
        ctx = ConnectorContext(tmp_path, mappings.load("glpi"), sleep=lambda s: None)
        writer = GlpiSource("glpi", glpi_options(url), ctx)
        fake.advance(60)
        refs = [writer.create_ticket(ticket_request(str(n), str(n), "glpi")).ref for n in (4, 5)]
        writer.close()
        assert all(int(r) in fake.tickets for r in refs)  # ordinary tickets of the same GLPI
        again = pull(rt, "glpi")
        assert not set(refs) & set(incidents(rt, "glpi")), "own ticket ingested"
        assert again.counts["created"] == 0

        # a technician edits one title and drops the marker: only the ledger knows it now
        fake.advance(60)
        fake.modify(int(refs[0]), name="Imprimante: rappel client manqué")
        record_in_ledger(rt, "glpi", incidents(rt, "glpi")["4"], refs[0])
        third = pull(rt, "glpi")
        assert refs[0] not in incidents(rt, "glpi") and third.counts["created"] == 0
        assert last_run(rt, "glpi").skipped_own == 1
    finally:
        dep.close()


def test_glpi_own_ticket_that_slips_past_the_search_is_skipped_by_its_title(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    ctx = ConnectorContext(tmp_path, mappings.load("glpi"), sleep=lambda s: None)
    src = GlpiSource("glpi", glpi_options(url), ctx)
    try:
        ref = src.create_ticket(ticket_request("4", "4", "glpi")).ref
        # a GLPI whose "contains" does not see the marker (a plugin, an encoding): the
        # search returns the ticket, its title still says it is qloop's
        rows = [{"id": int(ref), "name": fake.tickets[int(ref)]["name"],
                 "date_mod": fake.tickets[int(ref)]["date_mod"]}]  # fmt: skip
        driver = dataclasses.replace(src.puller.driver, fetch=lambda since, until: iter([rows]))
        (batch,) = list(driver.pull(None))
        assert batch.records == [] and batch.rejected == [] and batch.skipped_own == 1
        assert [key for key, _ in json.loads(batch.cursor or "")["seen"]] == [ref]  # kept
        assert fake.calls[f"/Ticket/{ref}/Log"] == 0  # skipped without reading its details
        assert fake.calls["/getMultipleItems"] == 0
    finally:
        src.close()


# -- Jira / JSM ----------------------------------------------------------------------


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(issues=40, profile_zone="Asia/Shanghai", start=MONTH)
    with serve(fake.app) as url:
        fake.server_url = url
        yield fake, url


def jira_deployment(database_url: str, tmp_path: Path, url: str, **options: Any) -> Deployment:
    # the worst case: nonconformity tickets in the very project and type the JQL reads
    ticket = {"project": "ITSD", "issue_type": "Incident", "labels": ["qa"]}
    source = {"type": "jira_sm", **source_options(url, ticket=ticket, **options)}
    extra = {"sources": {"jira": source}}
    return Deployment(sandbox_config(database_url, tmp_path, extra=extra))


def jira_source(tmp_path: Path, url: str, **options: Any) -> JiraSource:
    ticket = {"project": "ITSD", "issue_type": "Incident", "labels": ["qa"]}
    ctx = ConnectorContext(tmp_path / "writer", mappings.load("jira_sm"), sleep=lambda s: None)
    return JiraSource("jira", source_options(url, ticket=ticket, **options), ctx)


def test_jira_first_sync_counts_and_never_ingests_own_tickets(
    database_url: str, tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    writer = jira_source(tmp_path, url)
    own = [writer.create_ticket(ticket_request(f"1001{n}", f"ITSD-{n}", "jira")).ref
           for n in (1, 2, 3)]  # fmt: skip
    writer.close()
    assert {fake.issues[k].project for k in own} == {"ITSD"}  # same project, same type
    dep = jira_deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        first = pull(rt, "jira")
        keys = {i.key for i in incidents(rt, "jira").values()}
        assert not keys & set(own), "own ticket ingested"
        assert first.counts["created"] == 40 and keys == {f"ITSD-{n}" for n in range(1, 41)}
        assert last_run(rt, "jira").tool_count == 40

        # a ticket created before qloop stamped its own label: the JQL lets it through,
        # its dedup label still says whose it is
        fake.issues[own[0]].labels.remove(OWN_LABEL)
        fake.update_issue(own[0], fake.latest_update() + timedelta(minutes=1))
        second = pull(rt, "jira")
        assert own[0] not in {i.key for i in incidents(rt, "jira").values()}
        assert second.counts["created"] == 0 and last_run(rt, "jira").skipped_own == 1

        # labels wiped by hand: only the ticket ledger knows it
        fake.issues[own[1]].labels.clear()
        fake.update_issue(own[1], fake.latest_update() + timedelta(minutes=1))
        record_in_ledger(rt, "jira", next(iter(incidents(rt, "jira").values())), own[1])
        third = pull(rt, "jira")
        assert own[1] not in {i.key for i in incidents(rt, "jira").values()}
        assert third.counts["created"] == 0 and last_run(rt, "jira").skipped_own == 1
    finally:
        dep.close()


def test_jsm_breach_in_an_earlier_cycle_is_a_breach(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    created = datetime(2026, 10, 27, 1, 0, tzinfo=UTC)
    key = fake.add_incident(created, priority="Medium")  # resolution goal 8 h
    fake.update_issue(key, created + timedelta(minutes=20), "In Progress")
    fake.update_issue(key, created + timedelta(hours=10), "Resolved")  # cycle 1: 10 h, breached
    fake.update_issue(key, created + timedelta(hours=11), "In Progress")  # reopened
    fake.update_issue(key, created + timedelta(hours=11, minutes=5), "Resolved")  # 5 min, met
    src = jira_source(tmp_path, url)
    try:
        records = {r.key: r for b in src.pull(None) for r in b.records}
    finally:
        src.close()
    ttr = records[key].source_sla["cycles"]["time_to_resolution"]
    assert [c["breached"] for c in ttr["cycles"]] == [True, False]
    assert ttr["breached"] is True and ttr["met"] is False
    assert records[key].source_sla["resolution_met"] is False


def test_jsm_sla_summary_reads_every_cycle() -> None:
    def cycle(breached: bool) -> dict[str, Any]:
        return {"startTime": {"epochMillis": 1}, "stopTime": {"epochMillis": 2},
                "breached": breached, "goalDuration": {"millis": 5}}  # fmt: skip

    ongoing = {"startTime": {"epochMillis": 3}, "breached": False, "goalDuration": {"millis": 5}}
    breached_then_running = sla_summary(
        [{"name": "Time to resolution", "completedCycles": [cycle(True)], "ongoingCycle": ongoing}]
    )["time_to_resolution"]
    assert breached_then_running["met"] is False and breached_then_running["breached"] is True
    running = sla_summary(
        [{"name": "TTR", "completedCycles": [cycle(False)], "ongoingCycle": ongoing}]
    )
    assert running["ttr"]["met"] is None and running["ttr"]["breached"] is False
    met = sla_summary([{"name": "TTR", "completedCycles": [cycle(False), cycle(False)]}])
    assert met["ttr"]["met"] is True


# -- probes ---------------------------------------------------------------------------


def test_jira_probe_calls_documented_endpoints_and_explains_failures(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    src = jira_source(tmp_path, url)
    try:
        lines = src.probe()
    finally:
        src.close()
    called = {path for _, path in fake.log}
    documented = {"/rest/api/3/serverInfo", "/rest/api/3/myself", "/rest/servicedeskapi/info",
                  "/rest/api/3/search/approximate-count", "/rest/api/3/mypermissions"}  # fmt: skip
    assert documented <= called
    assert "about 40 issues" in lines[1] and any("Service Management 10.5.0" in x for x in lines)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"auth": {"email": "ops@example.com", "api_token": "wrong-secret"}}, "API token"),
        ({"base_url": f"{url}/wiki"}, "must be the Jira site"),
    ]
    for options, hint in cases:
        bad = jira_source(tmp_path, url, **options)
        with pytest.raises(FatalError, match=hint) as err:
            bad.probe()
        bad.close()
        assert "wrong-secret" not in str(err.value)

    fake.service_desk = False  # a Jira Software site: no JSM, so no SLA cycles
    no_jsm = jira_source(tmp_path, url)
    with pytest.raises(FatalError, match="set sla: false") as err:
        no_jsm.probe()
    no_jsm.close()
    assert err.value.attrs["status"] == 404
    without_sla = jira_source(tmp_path, url, sla=False)
    try:
        assert "not on this site" in without_sla.probe()[3]
    finally:
        without_sla.close()


def test_jira_probe_names_the_ca_bundle_on_a_tls_failure(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")

    ctx = ConnectorContext(tmp_path, mappings.load("jira_sm"), sleep=lambda s: None)
    opts = source_options("https://example.atlassian.net")
    src = JiraSource("jira", opts, ctx, transport=httpx.MockTransport(refuse))
    with pytest.raises(FatalError, match="verify_tls to the path of the CA bundle"):
        src.probe()
    src.close()


def test_glpi_probe_counts_the_scope_and_names_a_missing_right(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    fake.trash(3)
    ctx = ConnectorContext(tmp_path, mappings.load("glpi"), sleep=lambda s: None)
    src = GlpiSource("glpi", glpi_options(url), ctx)
    try:
        assert src.probe()[-1] == "150 tickets in scope (every status; 1 in the trash)"
        for path in ("/initSession", "/getFullSession", "/getMyProfiles", "/getActiveEntities"):
            assert fake.calls[path] >= 1, path
        fake.deny_tickets = True
        with pytest.raises(FatalError, match=r"search/Ticket failed.*lacks a right"):
            src.probe()
    finally:
        src.close()


# -- where operators see it ---------------------------------------------------------


def test_sources_list_and_get_sources_show_the_first_sync_count(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli_sources import list_status
    from tests.api.conftest import api_config, auth, serve_month

    for served in serve_month(api_config(database_url, tmp_path, incidents=30)):
        itsm = served.client.get("/sources", headers=auth("qa-read")).json()[0]
        first = itsm["first_sync"]
        assert first is not None and first["tool_count"] == 30
        assert first["seen"] + first["errors"] + first["skipped_own"] == 30
        assert itsm["last_run"]["tool_count"] is None  # a later, incremental run
        list_status(served.rt, "source")
        out = capsys.readouterr().out
        assert "read 30 (30 stored, 0 rejected, 0 own tickets skipped)" in out
        assert "the tool counts 30 in scope: as the tool counts" in out
