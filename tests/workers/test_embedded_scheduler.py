"""The embedded scheduler runs each job on its cron schedule, once per fire time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from core.store.models import SyncRun
from tests.utils.fixture_connectors import WORLD, register_fixture_types
from tests.utils.loop import Deployment, fixture_config, sandbox_config
from workers import guard
from workers.scheduler import Scheduler


def test_jobs_fire_on_their_schedules(tmp_path: Path) -> None:
    register_fixture_types()
    WORLD.reset()
    path = fixture_config(
        f"sqlite:///{tmp_path / 'q.db'}",
        tmp_path,
        {
            "schedules": {
                "dispatch": "* * * * *",
                "collect": "*/5 * * * *",
                "evaluate": "*/2 * * * *",
                "track": "0 * * * *",
            }
        },
    )
    text = path.read_text().replace(
        "type: fixture\n", "type: fixture\n    schedule: '*/5 * * * *'\n", 1
    )
    path.write_text(text)
    dep = Deployment(path)
    dep.clock.now = datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC)
    rt = dep.open()
    runs: Counter[str] = Counter()
    fired_at: dict[str, list[datetime]] = {}

    def on_run(name: str, results: object) -> None:
        runs[name] += 1
        fired_at.setdefault(name, []).append(dep.clock.now)

    sched = Scheduler(rt, on_run=on_run)
    assert sched.run_due() == []  # nothing is due before its first fire time
    for _ in range(20 * 60):  # twenty simulated minutes, one second at a time
        dep.clock.advance(seconds=1)
        sched.run_due()
    dep.close()
    assert runs["dispatch"] == 20
    assert runs["sync:itsm"] == 4  # 10:00, 10:05, 10:10, 10:15
    assert runs["evaluate"] == 10
    assert runs["track"] == 1
    assert fired_at["sync:itsm"][0] == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_an_overrunning_job_runs_once_not_once_per_missed_tick(tmp_path: Path) -> None:
    register_fixture_types()
    WORLD.reset()
    dep = Deployment(
        fixture_config(
            f"sqlite:///{tmp_path / 'q.db'}",
            tmp_path,
            {
                "schedules": {
                    "dispatch": "* * * * *",
                    "collect": "* * * * *",
                    "evaluate": "* * * * *",
                    "track": "* * * * *",
                }
            },
        )
    )
    dep.clock.now = datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
    rt = dep.open()
    sched = Scheduler(rt)
    dep.clock.advance(minutes=30)  # the process was stalled for half an hour
    ran = sched.run_due()
    assert Counter(ran)["dispatch"] == 1
    assert all(j.next_at > dep.clock.now for j in sched.jobs)
    dep.close()


def test_a_job_leased_elsewhere_is_skipped_and_a_cut_off_run_is_closed(tmp_path: Path) -> None:
    dep = Deployment(sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=20))
    rt = dep.open()
    try:
        with rt.db.session() as s:  # a scheduler killed mid-pull left its run "running"
            s.add(SyncRun(connector="itsm", kind="pull", started_at=rt.now(), status="running"))
        ran: dict[str, list[object]] = {}
        sched = Scheduler(rt, on_run=lambda name, results: ran.setdefault(name, results))
        [sync] = [j for j in sched.jobs if j.name == "sync:itsm"]
        sched.jobs = [sync]

        def statuses() -> list[str]:
            with rt.db.session() as s:
                return [r.status for r in s.scalars(select(SyncRun).order_by(SyncRun.id))]

        with guard.lease(rt.db, "sync:itsm", "worker-7") as held_by:  # an RQ worker has it
            assert held_by is None
            sync.next_at = rt.now()
            assert sched.run_due() == ["sync:itsm"]
        assert ran.pop("sync:itsm") == []  # skipped: nothing pulled…
        assert statuses() == ["running"]  # …and the other's run is left alone
        sync.next_at = rt.now()
        assert sched.run_due() == ["sync:itsm"]
        assert str(ran["sync:itsm"][0]).startswith("pull itsm: created=20")
        assert statuses() == ["interrupted", "ok"]
        assert guard.holder(rt.db, "sync:itsm") is None
    finally:
        dep.close()
