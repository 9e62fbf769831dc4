"""Syncs triggered through the API: queued to RQ, or run in a thread in embedded mode.

With ``redis_url`` set, a sync is enqueued through :mod:`workers.queue`
(``enqueue(config_path, "sync", source=name) -> job id``). Without it, the
API process runs :func:`workers.jobs.sync_source` in a background thread and
remembers the run under an id the caller can poll; one sync per source at a
time (a second trigger gets the running one's id).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from core.runtime import Runtime

log = logging.getLogger("qloop.api")

KEEP_FINISHED = 200
"""Finished embedded runs remembered for polling."""


@dataclass
class SyncJob:
    """One sync triggered in embedded mode."""

    run_id: str
    source: str
    started_at: datetime
    status: str = "running"
    finished_at: datetime | None = None
    results: list[str] = field(default_factory=list)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def enqueue_sync(rt: Runtime, source: str) -> tuple[str, bool]:
    """Queue a sync of ``source`` for the RQ workers.

    Returns the job id and whether one was already queued or running (then
    nothing new is queued and the id is the pending job's).
    """
    from workers import queue

    assert rt.config.redis_url is not None
    conn = queue.connect(rt.config.redis_url)
    try:
        done = queue.enqueue(conn, str(rt.config.path), "sync", source)
        if done.queued:
            return done.job_id, False
        return queue.pending_job(conn, "sync", source) or done.job_id, True
    finally:
        conn.close()


class SyncRunner:
    """Runs embedded-mode syncs in threads and remembers how they ended."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._jobs: dict[str, SyncJob] = {}
        self._lock = threading.Lock()

    def start(self, source: str) -> tuple[SyncJob, bool]:
        """Start a sync of ``source``; returns the job and whether it was already running."""
        with self._lock:
            for job in self._jobs.values():
                if job.source == source and job.status == "running":
                    return job, True
            job = SyncJob(run_id=uuid.uuid4().hex, source=source, started_at=self.rt.now())
            self._jobs[job.run_id] = job
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(job,), name=f"qloop-sync-{source}", daemon=True
        )
        thread.start()
        return job, False

    def _run(self, job: SyncJob) -> None:
        from workers import guard, jobs

        try:
            owner = guard.default_owner(f"api-{job.run_id[:8]}")
            with jobs.leased(self.rt, jobs.job_key("sync", job.source), owner) as held_by:
                if held_by is not None:  # the scheduler or a worker is syncing it now
                    job.status = "skipped"
                    job.error = f"already running as {held_by.owner}"
                    return
                results = jobs.sync_source(self.rt, job.source)
            job.results = [str(r) for r in results]
            errors = [e for r in results for e in r.errors]
            job.error = "; ".join(errors) or None
            job.status = "failed" if errors else "ok"
        except Exception as exc:  # the thread must record every failure, never die silently
            log.exception("sync %s (run %s) failed", job.source, job.run_id)
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
        finally:
            job.finished_at = self.rt.now()
            job.done.set()

    def _forget_old(self) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.status != "running"), key=lambda j: j.started_at
        )
        for job in finished[: max(len(finished) - KEEP_FINISHED, 0)]:
            self._jobs.pop(job.run_id, None)

    def get(self, run_id: str) -> SyncJob | None:
        return self._jobs.get(run_id)

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the run ends (for tests and shutdown); False on timeout."""
        job = self._jobs.get(run_id)
        return job is None or job.done.wait(timeout)

    def wait_all(self, timeout: float | None = None) -> None:
        for job in list(self._jobs.values()):
            job.done.wait(timeout)
