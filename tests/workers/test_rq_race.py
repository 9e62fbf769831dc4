"""Workers in other processes: two racing for one source, one killed mid-job."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select

from core.loop import plan, pull
from core.runtime import Runtime
from core.store.models import Incident, SourceState, SyncRun
from tests.utils.loop import Deployment, FakeClock, sandbox_config
from tests.workers.conftest import incident_state, spawn_worker
from workers import guard, queue
from workers.rq_worker import build_worker


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.05)


def _work(conn: Redis) -> None:
    build_worker(conn, ("sync",), simple=True).work(burst=True, logging_level="WARNING")


def _count(rt: Runtime, model: object, *where: object) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_two_workers_racing_for_one_source_pull_it_once(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(database_url, tmp_path, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())  # migrates the database before the child starts
    conn = queue.connect(redis_url)
    sync = queue.queue_for(conn, "sync")
    stem = queue.id_stem("sync", "itsm")
    first = sync.enqueue(queue.run, str(path), "sync", "itsm", job_id=f"{stem}first")
    child = spawn_worker(path, redis_url, delay=0.5)
    try:
        _wait_for(
            "the child to take the lease", lambda: guard.holder(rt.db, "sync:itsm") is not None
        )
        second = sync.enqueue(queue.run, str(path), "sync", "itsm", job_id=f"{stem}second")
        _work(conn)  # this worker gets the second job while the child still runs the first
        assert second.get_status() == JobStatus.FINISHED
        skipped = str(second.return_value())
        assert skipped.startswith("skipped sync:itsm: already running as")
        assert f"{stem}first" in skipped  # the holder names the job that runs
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert first.get_status() == JobStatus.FINISHED
    assert "created=60" in str(first.return_value())
    assert _count(rt, SyncRun, SyncRun.kind == "pull") == 1  # pulled once, not twice
    assert _count(rt, Incident) == 60
    assert guard.holder(rt.db, "sync:itsm") is None  # released at the end
    conn.close()


def test_a_worker_killed_mid_job_loses_nothing(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    ref_dir, rq_dir = tmp_path / "embedded", tmp_path / "rq"
    ref_dir.mkdir()
    rq_dir.mkdir()
    reference = Deployment(sandbox_config(f"sqlite:///{ref_dir / 'q.db'}", ref_dir))
    ref_rt = reference.open()
    pull(ref_rt, "itsm")
    plan(ref_rt)
    expected = incident_state(ref_rt)
    reference.close()

    path = sandbox_config(database_url, rq_dir, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    conn = queue.connect(redis_url)
    sync = queue.queue_for(conn, "sync")
    done = queue.enqueue(conn, str(path), "sync", "itsm", retry=Retry(max=2))
    child = spawn_worker(path, redis_url, delay=30.0)  # sleeps after each committed batch

    def first_batch_committed() -> bool:
        with rt.db.session() as s:
            state = s.get(SourceState, "itsm")
            return state is not None and state.cursor is not None

    try:
        _wait_for("the first batch", first_batch_committed)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert 0 < _count(rt, Incident) < 60  # killed half-way
    job = Job.fetch(done.job_id, connection=conn)
    assert job.get_status() == JobStatus.STARTED  # RQ does not know yet

    # The dead worker's lease has not expired, but its process is gone from this machine:
    # another sync takes the lease over at once and finishes the pull.
    other = sync.enqueue(queue.run, str(path), "sync", "itsm", job_id=queue.job_id("sync", "itsm"))
    _work(conn)
    assert str(other.return_value()).startswith("sync:itsm: pull itsm:")
    assert incident_state(rt) == expected  # nothing lost, nothing twice
    with rt.db.session() as s:  # the cut-off run is closed, not left "running" for ever
        runs = s.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        assert [r.status for r in runs] == ["interrupted", "ok"]
        assert runs[0].finished_at is not None
        assert runs[0].cursor_before is None  # the first sync started from nothing…
        assert runs[1].cursor_before is not None  # …the redo resumed from its committed batch

    # Time passes: the dead worker's heartbeat runs out and RQ retries its job, which
    # changes nothing.
    StartedJobRegistry(queue=sync).cleanup(timestamp=time.time() + 3600)
    job = Job.fetch(done.job_id, connection=conn)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == 1
    _work(conn)
    assert job.get_status() == JobStatus.FINISHED
    assert incident_state(rt) == expected
    assert guard.holder(rt.db, "sync:itsm") is None
    conn.close()
