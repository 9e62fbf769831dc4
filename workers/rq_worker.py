"""Start an RQ worker on qloop's queues.

The worker forks a work horse per job (a job that overruns its timeout is
killed and retried), runs RQ's scheduler too (``with_scheduler``: interval
retries and abandoned-job clean-up need it; RQ elects one per queue), and
shuts down warmly: the first SIGTERM/SIGINT lets the running job finish, a
second one stops at once. A worker killed with SIGKILL loses nothing: RQ
finds its job abandoned (no heartbeat) and retries it, and the job's
database lease expires so the retry may run (:mod:`workers.guard`).

RQ's command listener (a Redis pub/sub thread) waits up to 60 s per poll
and, with redis-py 8, shutdown joins it: when the unsubscribe reply is read
before the thread is told to stop, an idle worker took up to a minute to
exit after SIGTERM. qloop's workers poll every second instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from rq import SimpleWorker, Worker

from workers import jobs, queue

log = logging.getLogger("qloop.worker")

PUBSUB_POLL_S = 1.0
"""How long the command listener waits per poll: the bound on its part of a shutdown."""


class _QuickListener:
    """Subscribes to the worker's command channel like RQ, with a short poll."""

    def subscribe(self: Any) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class QloopWorker(_QuickListener, Worker):
    """RQ's forking worker, stopping within seconds of SIGTERM when idle."""


class QloopSimpleWorker(_QuickListener, SimpleWorker):
    """RQ's in-process worker, stopping within seconds of SIGTERM when idle."""


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
    cls = QloopSimpleWorker if simple else QloopWorker
    return cls(queue.all_queues(conn, kinds), connection=conn, name=name)


def run_worker(
    redis_url: str,
    kinds: Sequence[str] = queue.KINDS,
    *,
    burst: bool = False,
    logging_level: str = "INFO",
    config_path: str | Path | None = None,
) -> bool:
    """Work the queues until stopped (or, with ``burst``, until they are empty).

    ``config_path``: the config the jobs will name, loaded once here so the
    work horses forked per job need not read it again (:func:`workers.jobs.prepare`).
    Returns whether any job was run.
    """
    if config_path is not None:
        jobs.prepare(config_path)
    conn = queue.connect(redis_url)
    worker = build_worker(conn, kinds)
    names = ", ".join(q.name for q in worker.queues)
    log.info("worker %s on %s%s", worker.name, names, " (burst)" if burst else "")
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level=logging_level))
    finally:
        jobs.close_runtimes()  # release database connections and connector sessions
        conn.close()
