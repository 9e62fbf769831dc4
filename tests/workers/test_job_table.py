"""One job table: a kind added to workers.jobs.JOBS reaches every place that runs jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rq.cron import CronScheduler

from core.conf import load_config
from core.errors import ConfigError
from core.loop.common import StepResult
from core.runtime import Runtime
from tests.utils.fixture_connectors import WORLD, register_fixture_types
from tests.utils.loop import Deployment, fixture_config
from workers import cron, jobs, queue
from workers.scheduler import Scheduler


def _extra_job(ran: list[str | None]) -> jobs.Job:
    def run(rt: Runtime, name: str | None) -> list[StepResult]:
        ran.append(name)
        return []

    return jobs.Job("audit", "source", run, "a step added by one line")


def test_a_new_kind_is_scheduled_leased_and_queued_from_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_fixture_types()
    WORLD.reset()
    ran: list[str | None] = []
    monkeypatch.setitem(jobs.JOBS, "audit", _extra_job(ran))
    path = fixture_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    dep = Deployment(path)
    dep.clock.now = datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC)
    rt = dep.open()
    try:
        assert "audit:itsm" in jobs.job_keys(rt)
        sched = Scheduler(rt)
        assert "audit:itsm" in [j.name for j in sched.jobs]
        dep.clock.now = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # past every first fire time
        assert "audit:itsm" in sched.run_due()
        assert ran == ["itsm"]
        assert ("audit", "itsm", rt.config.sources["itsm"].schedule) in jobs.scheduled(rt.config)
    finally:
        dep.close()
    assert queue.queue_name("audit") == "audit"
    assert queue.id_stem("audit", "itsm") == "audit-itsm-"


def test_cron_registers_every_job_of_the_table(tmp_path: Path) -> None:
    register_fixture_types()
    path = fixture_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    cfg = load_config(path)
    sched = CronScheduler(connection=None)  # type: ignore[arg-type]  # registering needs no Redis
    registered = cron.register_schedule(sched, str(path), cfg)
    names = sorted(job.name for job in registered)
    expected = sorted(jobs.job_key(kind, name) for kind, name, _ in jobs.scheduled(cfg))
    assert names == expected
    assert {"sync:itsm", "dispatch", "evaluate", "track"} <= set(names)


def test_unknown_kinds_and_missing_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown kind of job 'nope'; known: sync"):
        jobs.job_key("nope")
    with pytest.raises(ConfigError, match="a sync job needs a source name"):
        jobs.job_key("sync")
    with pytest.raises(ConfigError, match="unknown kind"):
        queue.queue_name("nope")
