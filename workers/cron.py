"""The RQ schedule: the config's cron strings on RQ's CronScheduler, one leader at a time.

What fires: every job of the table (:func:`workers.jobs.scheduled`): one
``sync`` per enabled source (its ``schedule``), one ``collect`` per enabled
channel (its ``schedule``), ``dispatch``, ``evaluate`` and ``track`` from
the config's ``schedules``, and ``deliver`` (``schedules.deliver``) when
``reports.send`` lists recipients. Cron strings are
read in **UTC** (RQ 2.x evaluates them against ``rq.utils.now()``, which is
UTC; RQ 3 would switch to local time, hence ``rq<3``).

RQ's ``CronScheduler.register`` takes no job id, uniqueness or retry policy,
so every entry targets :func:`workers.queue.kick`, a small job that
enqueues the real one with its unique id and ``Retry``.

``CronScheduler`` has no lock between processes, so :class:`CronLeader`
drives it (instead of ``CronScheduler.start``) under a Redis lock: only the
process holding ``<prefix>qloop:cron-leader`` enqueues; another ``qloop
scheduler`` waits as a standby, polling the lock, and takes over within
``lock_ttl_s`` seconds when the leader dies. A new leader catches up a fire
missed during the hand-over (one lock period back); unique job ids make a
fire enqueued by both harmless.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from croniter import croniter
from redis import Redis
from redis.exceptions import LockError
from rq import cron as rq_cron
from rq.cron import CronJob, CronScheduler

from core.conf import AppConfig
from workers import jobs, queue

log = logging.getLogger("qloop.cron")

LOCK_TTL_S = 30
"""The leader lock's time to live; the leader renews it every third of it."""
KICK_TIMEOUT_S = 60
KICK_RESULT_TTL_S = 600


def lock_key() -> str:
    return f"{queue.prefix()}qloop:cron-leader"


def register_schedule(sched: CronScheduler, config_path: str, cfg: AppConfig) -> list[CronJob]:
    """Register every scheduled job of ``cfg`` on ``sched``; returns the cron jobs."""
    path = str(Path(config_path).resolve())
    out = []
    for kind, name, cron in jobs.scheduled(cfg):
        out.append(
            sched.register(
                queue.kick,
                queue.queue_name(kind),
                args=(path, kind, name),
                cron=cron,
                job_timeout=KICK_TIMEOUT_S,
                result_ttl=KICK_RESULT_TTL_S,
                name=f"{queue.prefix()}{jobs.job_key(kind, name)}",
            )
        )
    return out


class CronLeader:
    """Runs the schedule while holding the leader lock; a standby otherwise.

    Args:
        conn: the Redis connection.
        config_path: the config file the jobs open (made absolute).
        cfg: the loaded config (its schedules).
        lock_ttl_s: leader lock time to live, seconds.
        sleep: how to wait between rounds (tests pass a fake).
    """

    def __init__(
        self,
        conn: Redis,
        config_path: str,
        cfg: AppConfig,
        *,
        lock_ttl_s: int = LOCK_TTL_S,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.conn = conn
        self.lock_ttl_s = lock_ttl_s
        self.scheduler = CronScheduler(conn)
        self.jobs = register_schedule(self.scheduler, config_path, cfg)
        self._lock = conn.lock(lock_key(), timeout=lock_ttl_s, thread_local=False)
        self.is_leader = False
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait

    def _hold_lock(self) -> bool:
        """Stay (or become) the leader; False while another process leads."""
        if self.is_leader:
            try:
                self._lock.reacquire()
                return True
            except LockError:
                self.is_leader = False
                log.warning("cron %s: lost the leader lock; standing by", self.scheduler.name)
        if not self._lock.acquire(blocking=False):
            return False
        self.is_leader = True
        self._on_elected()
        return True

    def _on_elected(self) -> None:
        now = rq_cron.now()  # type: ignore[attr-defined]  # the clock RQ's cron reads (UTC)
        since = now - timedelta(seconds=self.lock_ttl_s)
        for job in self.jobs:
            if job.cron:
                job.next_enqueue_time = croniter(job.cron, since).get_next(datetime)
        self.scheduler.register_birth()
        log.info("cron %s: leading; %d scheduled jobs", self.scheduler.name, len(self.jobs))

    def tick(self) -> list[str]:
        """One round: keep the lock, enqueue the kicks that are due; their names."""
        if not self._hold_lock():
            return []
        due = self.scheduler.enqueue_jobs()
        if due:
            self.scheduler.save()
        self.scheduler.heartbeat()
        return [job.name for job in due]

    def seconds_to_next(self) -> float:
        """How long to wait before the next round (at most a third of the lock's life)."""
        cap = self.lock_ttl_s / 3
        if not self.is_leader:
            return cap
        return min(self.scheduler.calculate_sleep_interval(), cap)

    def stop(self, *_: object) -> None:
        self._stop.set()

    def resign(self) -> None:
        """Give up the lock (if held) so a standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        self.scheduler.register_death()
        try:
            self._lock.release()
        except LockError:
            log.warning("cron %s: the leader lock had already expired", self.scheduler.name)

    def serve(self, max_ticks: int | None = None) -> None:
        """Run rounds until SIGINT/SIGTERM (or :meth:`stop`), then resign."""
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self.stop)
        ticks = 0
        try:
            while not self._stop.is_set():
                for name in self.tick():
                    log.info("cron: enqueued %s", name)
                ticks += 1
                if max_ticks is not None and ticks >= max_ticks:
                    break
                self._sleep(self.seconds_to_next())
        finally:
            self.resign()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
