"""jira_sm on the fake Jira through the real loop: incremental syncs, zones, storms, backfill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import connectors.jira_sm  # noqa: F401  (registers jira_sm before the config is validated)
from api.cli import main
from core.loop import pull
from core.runtime import Runtime
from core.store.models import AuditLog, Incident, RejectedRecord, SourceState, StatusEvent, SyncRun
from tests.fakes.jira import STATUSES, FakeJira, source_options
from tests.fakes.server import serve
from tests.utils.loop import Deployment, sandbox_config

N = 45


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    jira = FakeJira(issues=N, profile_zone="America/New_York")
    with serve(jira.app) as url:
        jira.server_url = url
        yield jira, url


def deploy(
    database_url: str, tmp_path: Path, url: str, mapping: Any = None, **options: Any
) -> Deployment:
    source = {"type": "jira_sm", **source_options(url, **options)}
    if mapping:
        source["mapping"] = mapping
    return Deployment(sandbox_config(database_url, tmp_path, extra={"sources": {"jira": source}}))


def stored(rt: Runtime) -> dict[str, tuple[Incident, list[tuple[datetime, str]]]]:
    with rt.db.session() as s:
        out = {}
        for inc in s.scalars(select(Incident).where(Incident.source == "jira")):
            events = s.scalars(
                select(StatusEvent)
                .where(StatusEvent.incident_id == inc.id)
                .order_by(StatusEvent.seq)
            )
            out[inc.key] = (inc, [(e.at.replace(tzinfo=UTC), e.status) for e in events])
        s.expunge_all()
        return out


def expected_history(jira: FakeJira, key: str) -> list[tuple[datetime, str]]:
    return [
        (datetime.fromtimestamp(ms // 1000, UTC), status)
        for ms, status in jira.issues[key].status_changes()
    ]


def assert_mirrors(rt: Runtime, jira: FakeJira) -> None:
    """The store holds every fake incident once, with its whole status history."""
    rows = stored(rt)
    incidents = {k for k, i in jira.issues.items() if i.project == jira.project}
    assert set(rows) == incidents
    for key, (inc, history) in rows.items():
        issue = jira.issues[key]
        assert history == expected_history(jira, key), key
        assert inc.status == issue.status
        # a change qloop does not read (a label) leaves the stored version as it was
        last_status = datetime.fromtimestamp(issue.status_changes()[-1][0] // 1000, UTC)
        assert (
            last_status
            <= inc.updated_at.replace(tzinfo=UTC)
            <= datetime.fromtimestamp(issue.updated // 1000, UTC)
        )


def cursor_of(rt: Runtime) -> dict[str, Any]:
    with rt.db.session() as s:
        state = s.get(SourceState, "jira")
        assert state is not None and state.cursor is not None
        return dict(json.loads(state.cursor))


@pytest.mark.parametrize(
    ("mode", "retry_after", "child"),
    [("epoch", "1", False), ("profile", "date", False), ("epoch", "1", True)],
    ids=["epoch-ms", "profile-zone", "pull-process"],
)
def test_incremental_syncs_mirror_jira_across_boundary_updates_and_429_storms(
    database_url: str,
    tmp_path: Path,
    fake: tuple[FakeJira, str],
    mode: str,
    retry_after: str,
    child: bool,
) -> None:
    jira, url = fake
    jira.throttle = (4, 2, retry_after)  # two 429s in a row every four requests
    dep = deploy(
        database_url, tmp_path, url, timezone_mode=mode, fetch_workers=3, pull_process=child
    )
    try:
        rt = dep.open()
        first = pull(rt, "jira")
        assert first.counts["created"] == N and first.errors == []
        assert_mirrors(rt, jira)
        long_one = next(k for k, i in jira.issues.items() if len(i.histories) > jira.expand_cap)
        assert ("GET", f"/rest/api/3/issue/{long_one}/changelog") in jira.log
        # the storm was waited out (by the child's copy of the clock with pull_process)
        assert jira.throttled > 5 and (child or dep.clock.slept)

        # updates landing exactly on the watermark, on its minute, and just inside the overlap
        mark = datetime.fromisoformat(cursor_of(rt)["w"])
        on_minute = mark.replace(second=0, microsecond=0)
        keys = [
            k for k in jira.issues if jira.issues[k].updated < int(on_minute.timestamp() * 1000)
        ]
        changed = {keys[0]: mark, keys[1]: on_minute, keys[2]: mark - timedelta(seconds=90)}
        for key, at in changed.items():
            status = "In Progress" if STATUSES[jira.issues[key].status][0] == "done" else "Resolved"
            jira.update_issue(key, at, status)
        jira.update_issue(keys[3], mark + timedelta(milliseconds=1))  # a non-status edit
        second = pull(rt, "jira")
        assert second.counts["created"] == 0 and second.errors == []
        assert second.counts["updated"] == 3  # the edit changes nothing qloop reads
        assert second.counts["seen"] >= 4
        assert_mirrors(rt, jira)

        third = pull(rt, "jira")  # nothing changed: nothing re-delivered as a change
        assert third.counts["created"] == third.counts["updated"] == 0
        if mode == "epoch":
            assert third.counts["seen"] == 0  # the overlap's versions are in the cursor
    finally:
        dep.close()


@pytest.mark.parametrize("child", [False, True], ids=["one-process", "pull-process"])
def test_backfill_in_parallel_windows_pulls_every_issue_exactly_once(
    database_url: str, tmp_path: Path, fake: tuple[FakeJira, str], child: bool
) -> None:
    jira, url = fake
    start = datetime(2026, 9, 30, tzinfo=UTC)
    dep = deploy(
        database_url,
        tmp_path,
        url,
        backfill_from=start.isoformat(),
        backfill_parts=6,
        backfill_workers=3,
        page_size=5,
        timezone_mode="profile",
        pull_process=child,
    )
    try:
        rt = dep.open()
        result = pull(rt, "jira")
        assert result.counts["seen"] == result.counts["created"] == N
        assert_mirrors(rt, jira)
        windows = [p for m, p in jira.log if p == "/rest/api/3/search/jql"]
        assert len(windows) >= 6
        mark = datetime.fromisoformat(cursor_of(rt)["w"])
        assert mark == dep.clock.now.replace(second=0, microsecond=0)
        jira.update_issue("ITSD-3", dep.clock.now + timedelta(minutes=5), "Closed")
        dep.clock.advance(minutes=10)
        again = pull(rt, "jira")
        assert again.counts["created"] == 0 and again.counts["updated"] == 1
        assert_mirrors(rt, jira)
    finally:
        dep.close()


@pytest.mark.parametrize("child", [False, True], ids=["one-process", "pull-process"])
def test_a_record_that_fails_mapping_is_rejected_loudly_and_the_pull_goes_on(
    database_url: str, tmp_path: Path, fake: tuple[FakeJira, str], child: bool
) -> None:
    jira, url = fake
    dep = deploy(database_url, tmp_path, url, pull_process=child)
    try:
        rt = dep.open()
        pull(rt, "jira")
        top = jira.latest_update()
        jira.update_issue("ITSD-1", top + timedelta(minutes=1), "Resolved")
        jira.update_issue("ITSD-2", top + timedelta(minutes=2), "Triage")  # not in status_map
        jira.update_issue("ITSD-5", top + timedelta(minutes=3), "Resolved")
        result = pull(rt, "jira")
        assert result.errors == [] and result.counts["rejected"] == 1
        assert result.counts["updated"] == 2
        with rt.db.session() as s:
            run = s.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
            assert run is not None and run.status == "ok" and run.errors == 1
            (rej,) = s.scalars(select(RejectedRecord)).all()
            assert (rej.source, rej.key, rej.resolved_at) == ("jira", "ITSD-2", None)
            assert "Triage" in rej.error
            assert rej.source_updated_at == top + timedelta(minutes=2)
        rows = stored(rt)
        assert rows["ITSD-1"][0].status == "Resolved"  # before the bad record
        assert rows["ITSD-5"][0].status == "Resolved"  # after it: not held back
        assert rows["ITSD-2"][0].status != "Triage"  # the stored version stays as it was
        assert pull(rt, "jira").counts["rejected"] == 0  # the same version is not re-read
        # the operator maps the new status; the record's next version maps and resolves it
        fix = {"mapping": {"status_map": {"Triage": "new"}}}
        deploy(database_url, tmp_path, url, pull_process=child, **fix)
        rt = dep.open()
        jira.update_issue("ITSD-2", top + timedelta(minutes=4), "Triage")
        fixed = pull(rt, "jira")
        assert fixed.errors == [] and fixed.counts["updated"] == 1
        with rt.db.session() as s:
            (rej,) = s.scalars(select(RejectedRecord)).all()
            assert rej.resolved_at is not None and rej.times == 1
        assert_mirrors(rt, jira)
    finally:
        dep.close()


def test_after_a_mapping_fix_a_resync_brings_back_the_unchanged_rejected_record(
    database_url: str,
    tmp_path: Path,
    fake: tuple[FakeJira, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    jira, url = fake
    dep = deploy(database_url, tmp_path, url)
    try:
        rt = dep.open()
        pull(rt, "jira")
        jira.update_issue("ITSD-3", jira.latest_update() + timedelta(minutes=1), "Triage")
        assert pull(rt, "jira").counts["rejected"] == 1
        config = ["-c", str(dep.path)]
        assert main(["sources", "list", *config]) == 0
        assert "1 rejected record(s): qloop sources rejects jira" in capsys.readouterr().out
        assert main(["sources", "rejects", "jira", *config]) == 0
        out = capsys.readouterr().out
        assert "jira ITSD-3 [open]" in out and "'Triage' is not in status_map" in out
        # the mapping is fixed; the record itself does not change in Jira
        deploy(database_url, tmp_path, url, mapping={"status_map": {"Triage": "in_progress"}})
        rt = dep.open()
        assert pull(rt, "jira").counts["rejected"] == 0  # unchanged: not read again…
        assert main(["sources", "resync", "jira", *config]) == 0  # …until the resync
        assert "cursor cleared" in capsys.readouterr().out
        again = pull(rt, "jira")
        assert again.counts["updated"] == 1 and again.counts["created"] == 0
        assert main(["sources", "rejects", "jira", *config]) == 0
        assert capsys.readouterr().out.strip() == "no open rejected records"
        assert main(["sources", "rejects", "jira", "--all", *config]) == 0
        assert "jira ITSD-3 [resolved" in capsys.readouterr().out
        assert stored(rt)["ITSD-3"][0].status == "Triage"
        with rt.db.session() as s:
            audit = s.scalars(select(AuditLog).where(AuditLog.action == "resync")).one()
            assert (audit.entity_id, audit.actor) == ("jira", "cli")
        assert_mirrors(rt, jira)
    finally:
        dep.close()


def test_sla_cycles_and_contact_are_kept_beside_the_incident(
    database_url: str, tmp_path: Path, fake: tuple[FakeJira, str]
) -> None:
    _, url = fake
    dep = deploy(database_url, tmp_path, url, contact="participants")
    try:
        rt = dep.open()
        pull(rt, "jira")
        rows = stored(rt)
        inc, _ = rows["ITSD-1"]  # every 4th issue has participants, the first with an e-mail
        assert inc.contact_name == "韩梅梅" and inc.contact_email == "han@ex.cn"
        sla = inc.source_sla
        ttr = sla["cycles"]["time_to_resolution"]
        assert set(ttr) >= {"met", "breached", "goal_ms", "elapsed_ms", "cycles", "ongoing"}
        assert sla["resolution_met"] == ttr["met"]
        assert sla["response_met"] == sla["cycles"]["time_to_first_response"]["met"]
        assert any(r[0].source_sla["resolution_met"] is None for r in rows.values())  # ongoing
    finally:
        dep.close()
