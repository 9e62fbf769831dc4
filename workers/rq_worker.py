"""Start an RQ worker on qloop's queues.

The worker forks a work horse per job (a job that overruns its timeout is
killed and retried), runs RQ's scheduler too (``with_scheduler``: interval
retries and abandoned-job clean-up need it; RQ elects one per queue), and
shuts down warmly: the first SIGTERM/SIGINT lets the running job finish, a
second one stops at once. A worker killed with SIGKILL loses nothing: RQ
finds its job abandoned (no heartbeat) and retries it, and the job's
database lease expires so the retry may run (:mod:`workers.guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis import Redis
from rq import SimpleWorker, Worker

from workers import jobs, queue

log = logging.getLogger("qloop.worker")


def build_worker(
    conn: Redis,
    kinds: Sequence[str] = queue.KINDS,
    *,
    simple: bool = False,
    name: str | None = None,
) -> Worker | SimpleWorker:
    """A worker listening on the queues of ``kinds``, in the given order of priority.

    ``simple`` runs jobs in the worker's own process (no fork): for tests and
    platforms without ``fork``. ``name`` defaults to RQ's (host, pid, random).
    """
    cls = SimpleWorker if simple else Worker
    return cls(queue.all_queues(conn, kinds), connection=conn, name=name)


def run_worker(
    redis_url: str,
    kinds: Sequence[str] = queue.KINDS,
    *,
    burst: bool = False,
    logging_level: str = "INFO",
) -> bool:
    """Work the queues until stopped (or, with ``burst``, until they are empty).

    Returns whether any job was run.
    """
    conn = queue.connect(redis_url)
    worker = build_worker(conn, kinds)
    names = ", ".join(q.name for q in worker.queues)
    log.warning("worker %s on %s%s", worker.name, names, " (burst)" if burst else "")
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level=logging_level))
    finally:
        jobs.close_runtimes()  # release database connections and connector sessions
        conn.close()
