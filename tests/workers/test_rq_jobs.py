"""Jobs run by real RQ workers: same state as the embedded loop, retries, failed registry."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from redis import Redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from api.cli import main
from api.cli_jobs import error_text
from core.export.rows import export_rows
from core.loop import run_once
from core.runtime import Runtime
from tests.conftest import ROOT
from tests.utils.loop import Deployment, FakeClock, sandbox_config
from workers import jobs, queue
from workers.rq_worker import PUBSUB_POLL_S, build_worker


def _rows(rt: Runtime) -> list[dict[str, object]]:
    pol = rt.config.policies["default"]
    with rt.db.session() as s:
        return list(
            export_rows(
                s,
                policy="default",
                version=pol.version,
                month="2026-10",
                tz=ZoneInfo("Asia/Shanghai"),
            )
        )


def _work(conn: Redis, kinds: tuple[str, ...] = queue.KINDS) -> None:
    """A real RQ worker, in this process, until the queues are empty."""
    build_worker(conn, kinds, simple=True).work(burst=True, logging_level="WARNING")


def test_rq_jobs_leave_the_same_state_as_the_embedded_loop(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    deterministic_tokens: Callable[[], None],
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    embedded_dir, rq_dir = tmp_path / "embedded", tmp_path / "rq"
    embedded_dir.mkdir()
    rq_dir.mkdir()
    embedded = Deployment(sandbox_config(f"sqlite:///{embedded_dir / 'q.db'}", embedded_dir))
    rt = embedded.open()
    run_once(rt)
    expected = _rows(rt)
    embedded.close()
    assert len(expected) > 20

    deterministic_tokens()  # the same tokens again, so the sandbox channels answer the same
    path = sandbox_config(database_url, rq_dir, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    conn = queue.connect(redis_url)
    cfg = str(path)
    steps: list[tuple[str, str | None]] = [
        ("sync", "itsm"),
        ("dispatch", None),
        *[("collect", c) for c in rt.channel_names()],
        ("evaluate", None),
        ("dispatch", None),
        ("track", None),
    ]
    for kind, name in steps:  # the order run_once takes, one job at a time
        done = queue.enqueue(conn, cfg, kind, name)
        assert done.queued, done
        _work(conn)
        job = Job.fetch(done.job_id, connection=conn)
        assert job.get_status() == JobStatus.FINISHED, error_text(job)
        assert str(job.return_value()).startswith(jobs.job_key(kind, name))
    assert _rows(rt) == expected
    conn.close()


def test_a_pending_job_is_not_queued_twice(redis_url: str, tmp_path: Path) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    conn = queue.connect(redis_url)
    first = queue.enqueue(conn, str(path), "sync", "itsm")
    again = queue.enqueue(conn, str(path), "sync", "itsm")
    assert first.queued
    assert not again.queued
    assert first.job_id in again.reason
    # the same schedule slot is refused by RQ itself (unique job id), even once it left the queue
    slot = Job.fetch(first.job_id, connection=conn).enqueued_at
    assert slot is not None
    sync_queue = queue.queue_for(conn, "sync")
    sync_queue.empty()
    for_slot = queue.enqueue(conn, str(path), "sync", "itsm", fire_at=slot)
    assert for_slot.queued
    assert for_slot.job_id == queue.id_stem("sync", "itsm") + slot.strftime("%Y%m%d%H%M")
    conn.lrem(sync_queue.key, 0, for_slot.job_id)  # as if a worker had taken it
    dup = queue.enqueue(conn, str(path), "sync", "itsm", fire_at=slot)
    assert (dup.queued, dup.reason) == (False, "already queued")
    conn.close()


def test_a_failing_job_is_retried_then_failed_shown_and_requeued(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}", tmp_path, extra={"redis_url": redis_url}
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text(good.read_text().replace("incidents: 60", "incidents: -1"), encoding="utf-8")
    conn = queue.connect(redis_url)
    done = queue.enqueue(conn, str(broken), "sync", "itsm", retry=Retry(max=2))
    _work(conn)
    job = Job.fetch(done.job_id, connection=conn)
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0  # tried three times in all
    assert done.job_id in FailedJobRegistry(queue=queue.queue_for(conn, "sync")).get_job_ids()

    capsys.readouterr()
    assert main(["jobs", "-c", str(good), "failed"]) == 0
    out = capsys.readouterr().out
    assert done.job_id in out
    assert "incidents" in out  # the error names the faulty option

    assert main(["jobs", "-c", str(good), "list"]) == 0
    assert "failed   1" in capsys.readouterr().out

    broken.write_text(good.read_text(), encoding="utf-8")  # the operator fixes the config
    assert main(["jobs", "-c", str(good), "requeue", done.job_id]) == 0
    assert f"requeued {done.job_id}" in capsys.readouterr().out
    assert main(["jobs", "-c", str(good), "requeue", "no-such-job"]) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "worker", "-c", str(good), "--burst", "--queues", "sync"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    job = Job.fetch(done.job_id, connection=conn)
    assert job.get_status() == JobStatus.FINISHED, error_text(job)
    assert "created=60" in str(job.return_value())
    assert main(["jobs", "-c", str(good), "failed"]) == 0
    assert "no failed jobs" in capsys.readouterr().out
    conn.close()


def test_worker_and_jobs_need_redis_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    assert main(["worker", "-c", str(path), "--burst"]) == 2
    assert "redis_url is not set" in capsys.readouterr().err
    assert main(["jobs", "-c", str(path)]) == 2


@pytest.mark.parametrize("simple", [True, False])
def test_the_command_listener_stops_within_a_poll_when_it_read_the_unsubscribe_first(
    redis_url: str, simple: bool
) -> None:
    """The shutdown race that held an idle worker up to a minute after SIGTERM.

    Shutdown sends UNSUBSCRIBE, then stops the listener thread and joins it.
    When the thread reads the reply first, it waits for a new subscription
    for one poll before it sees the stop: RQ's poll is 60 s, qloop's 1 s.
    """
    conn = queue.connect(redis_url)
    worker = build_worker(conn, ("sync",), simple=simple)
    worker.subscribe()
    try:
        deadline = time.monotonic() + 10
        while not worker.pubsub.subscribed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        worker.pubsub.unsubscribe()
        while worker.pubsub.subscribed:  # the thread has read the reply: the race is lost
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)  # …and is back waiting for a subscription
        started = time.monotonic()
        worker.pubsub_thread.stop(timeout=10)
        assert not worker.pubsub_thread.is_alive()
        assert time.monotonic() - started < PUBSUB_POLL_S + 1
    finally:
        worker.pubsub.close()
        conn.close()
