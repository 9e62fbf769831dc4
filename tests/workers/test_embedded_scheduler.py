"""The embedded scheduler runs each job on its cron schedule, once per fire time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.utils.fixture_connectors import WORLD, register_fixture_types
from tests.utils.loop import Deployment, fixture_config
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
