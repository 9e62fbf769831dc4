"""The embedded scheduler: runs the loop's jobs in-process on their cron schedules.

Schedules: one ``sync`` job per source (its ``schedule``), one ``collect``
job per channel (its ``schedule``), and the ``dispatch``, ``evaluate`` and
``track`` jobs from the config's ``schedules``. Cron strings are read in UTC.
A job is never run twice at once: one thread here, and each job runs under
the same database lease as the RQ jobs (:mod:`workers.guard`, keys
``sync:itsm``, ``dispatch``…), so a second scheduler or a worker on the
same store skips what this one is running. A job that overruns its next
fire time runs once, not once per missed tick.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from croniter import croniter

from core.errors import QloopError
from core.loop.common import StepResult
from core.runtime import Runtime
from workers import guard, jobs

log = logging.getLogger("qloop.scheduler")


@dataclass
class ScheduledJob:
    name: str
    cron: str
    run: Callable[[], list[StepResult]]
    next_at: datetime

    def advance(self, now: datetime) -> None:
        it = croniter(self.cron, now)
        self.next_at = it.get_next(datetime)


def build_jobs(rt: Runtime, now: datetime) -> list[ScheduledJob]:
    """The schedule of every job, from the config."""
    specs: list[tuple[str, str, Callable[[], list[StepResult]]]] = []
    for name in rt.source_names():
        specs.append(
            (
                guard.job_key("sync", name),
                rt.config.sources[name].schedule,
                partial(jobs.sync_source, rt, name),
            )
        )
    for name in rt.channel_names():
        specs.append(
            (
                guard.job_key("collect", name),
                rt.config.channels[name].schedule,
                partial(jobs.collect_channel, rt, name),
            )
        )
    sched = rt.config.schedules
    specs.append(("dispatch", sched["dispatch"], lambda: jobs.dispatch(rt)))
    specs.append(("evaluate", sched["evaluate"], lambda: jobs.evaluate_all(rt)))
    specs.append(("track", sched["track"], lambda: jobs.track_tickets(rt)))
    if rt.config.reports.send:
        specs.append(("deliver", sched["deliver"], lambda: jobs.deliver(rt)))
    out = []
    for name, cron, fn in specs:
        job = ScheduledJob(name, cron, fn, now)
        job.advance(now)
        out.append(job)
    return out


class Scheduler:
    """Runs due jobs until stopped (SIGINT/SIGTERM or :meth:`stop`)."""

    def __init__(
        self,
        rt: Runtime,
        sleep: Callable[[float], None] | None = None,
        on_run: Callable[[str, list[StepResult]], None] | None = None,
    ) -> None:
        self.rt = rt
        self.jobs = build_jobs(rt, rt.now())
        self._stop = threading.Event()
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self.on_run = on_run
        self._owner = guard.default_owner("scheduler")

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run_due(self) -> list[str]:
        """Run every job whose time has come; returns their names."""
        ran = []
        for job in sorted(self.jobs, key=lambda j: j.next_at):
            now = self.rt.now()
            if job.next_at > now or self._stop.is_set():
                continue
            try:
                results = self._run_leased(job)
            except QloopError as exc:
                log.error("job %s failed: %s", job.name, exc)
                results = []
            job.advance(self.rt.now())
            ran.append(job.name)
            if self.on_run:
                self.on_run(job.name, results)
        return ran

    def _run_leased(self, job: ScheduledJob) -> list[StepResult]:
        """Run ``job`` under its key's lease; nothing when another process holds it."""
        with jobs.leased(self.rt, job.name, self._owner) as held_by:
            if held_by is not None:
                log.warning("job %s skipped: already running as %s", job.name, held_by.owner)
                return []
            return job.run()

    def serve(self, max_ticks: int | None = None) -> None:
        """Loop: run due jobs, sleep until the next one (at most 1 s at a time)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGTERM, self.stop)
        ticks = 0
        while not self._stop.is_set():
            self.run_due()
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                break
            nxt = min(j.next_at for j in self.jobs)
            self._sleep(max(0.0, min(1.0, (nxt - self.rt.now()).total_seconds())))
