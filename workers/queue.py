"""The loop's steps as RQ jobs: one queue per kind of work, unique job ids, retries.

One queue per kind of job of :data:`workers.jobs.JOBS` (``sync``, one job per
source; ``dispatch``; ``collect``, one job per channel; ``evaluate``;
``track``; ``deliver``, the monthly report). The partitioned kinds
(``dispatch-part``, ``evaluate-part``, ``raise-part``, ``track-part``) run one
job per partition ``k/n`` (:func:`enqueue_partitions`), and ``sample`` the
evaluate job's sampling alone: a fan-out of the loop over several workers
queues those instead of ``dispatch``, ``evaluate`` and ``track``.
RQ calls :func:`run` with plain strings — the config file's path, the kind
and a source, channel or partition name — and it opens the runtime itself
(:func:`workers.jobs.runtime_for`).

Two layers keep a job from running twice at once:

* Job ids are ``<kind>-<name>-<UTC minute of the fire time>`` enqueued with
  ``unique=True``: the same fire enqueued twice (a second cron leader, a kick
  run twice) is refused by RQ atomically (``DuplicateJobError``, reported as
  "already queued"), and a key whose job is still queued, started or waiting
  for a retry is not enqueued again.
* The database guard (:mod:`workers.guard`): a worker takes the key's lease
  before running the step; a second worker racing for the same key skips and
  says so.

Failed jobs are retried with RQ's :class:`~rq.Retry` (interval retries are
scheduled, so workers run ``--with-scheduler``) and end in the queue's
failed registry with their error, where ``qloop jobs`` shows and requeues
them. ``QLOOP_QUEUE_PREFIX`` (letters, digits, ``_``, ``-``) prefixes queue
names and job ids so several deployments can share one Redis database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from core.errors import ConfigError, QloopError
from core.loop.common import StepResult
from core.runtime import Runtime
from core.timeutil import to_utc, utcnow
from workers import guard, jobs
from workers.jobs import job_key, job_spec

log = logging.getLogger("qloop.queue")

KINDS: tuple[str, ...] = jobs.KINDS
"""The kinds of work, one RQ queue each (the job table's order)."""

JOB_TIMEOUT_S = 1800
"""A step running longer than this is killed by the worker (and retried)."""
RESULT_TTL_S = 3600
"""How long a finished job's result stays visible."""
FAILURE_TTL_S = 7 * 86400
"""How long a failed job stays in the failed registry (``qloop jobs failed``)."""
DEFAULT_RETRY = Retry(max=3, interval=[30, 120, 600])
"""Retries of a failed job: after 30 s, 2 min and 10 min (needs ``--with-scheduler`` workers)."""

_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class StepFailed(QloopError):
    """A step of a job reported errors; raised so RQ retries the job and records why."""


def prefix() -> str:
    """The queue and job id prefix from ``QLOOP_QUEUE_PREFIX`` (empty by default)."""
    value = os.environ.get("QLOOP_QUEUE_PREFIX", "")
    if _ID_CHARS.search(value):
        msg = f"QLOOP_QUEUE_PREFIX: {value!r} may hold only letters, digits, '_' and '-'"
        raise ConfigError(msg)
    return value


def queue_name(kind: str) -> str:
    """The RQ queue of ``kind`` (``sync``, ``dispatch``…), prefixed."""
    job_spec(kind)  # ConfigError for an unknown kind
    return f"{prefix()}{kind}"


def connect(redis_url: str) -> Redis:
    """A Redis connection for RQ (bytes responses, as RQ expects)."""
    return Redis.from_url(redis_url)


def queue_for(conn: Redis, kind: str) -> Queue:
    return Queue(queue_name(kind), connection=conn, default_timeout=JOB_TIMEOUT_S)


def all_queues(conn: Redis, kinds: Sequence[str] = KINDS) -> list[Queue]:
    return [queue_for(conn, k) for k in kinds]


def id_stem(kind: str, name: str | None = None) -> str:
    """The fixed start of a key's job ids: ``sync-itsm-``; names are made id-safe."""
    if job_spec(kind).per is None or not name:
        return f"{prefix()}{kind}-"
    safe = _ID_CHARS.sub("_", name)
    if safe != name:  # keep distinct names distinct once made safe
        safe += "_" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{prefix()}{kind}-{safe}-"


def job_id(kind: str, name: str | None, fire_at: datetime | None = None) -> str:
    """The id of the job of a schedule slot: ``sync-itsm-202611201005`` (its UTC minute).

    Without ``fire_at`` (a job asked for by hand) the id is the current second
    plus a random tag, so asking again after the job ended queues a new one.
    """
    if fire_at is None:
        return f"{id_stem(kind, name)}{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    return id_stem(kind, name) + to_utc(fire_at).strftime("%Y%m%d%H%M")


@dataclass(frozen=True)
class Enqueued:
    """What :func:`enqueue` did: the job id and whether a new job was queued."""

    job_id: str
    queued: bool
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.job_id}: queued" if self.queued else f"{self.job_id}: {self.reason}"


def pending_job(conn: Redis, kind: str, name: str | None = None) -> str | None:
    """The id of this key's job that is queued, running or waiting to retry, if any."""
    stem = id_stem(kind, name)
    q = queue_for(conn, kind)
    registries = (
        StartedJobRegistry(queue=q),
        ScheduledJobRegistry(queue=q),  # type: ignore[no-untyped-call]
    )
    for ids in (q.get_job_ids(), *(r.get_job_ids() for r in registries)):
        for jid in ids:
            if jid.startswith(stem):
                return jid
    return None


def enqueue(
    conn: Redis,
    config_path: str,
    kind: str,
    name: str | None = None,
    *,
    fire_at: datetime | None = None,
    retry: Retry | None = DEFAULT_RETRY,
) -> Enqueued:
    """Queue the ``kind`` job (of source/channel ``name``) unless it is already pending.

    ``fire_at`` names the schedule slot the job is for; the same slot is only
    ever queued once (``unique=True``). Without it the job is a one-off.
    """
    key = job_key(kind, name)  # ConfigError for an unknown kind or a missing name
    jid = job_id(kind, name, fire_at)
    busy = pending_job(conn, kind, name)
    if busy is not None:
        return Enqueued(jid, False, f"already queued or running as {busy}")
    try:
        queue_for(conn, kind).enqueue(
            run,
            config_path,
            kind,
            name if job_spec(kind).per else None,
            job_id=jid,
            unique=True,
            retry=retry,
            job_timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=f"{key} ({config_path})",
        )
    except DuplicateJobError:
        return Enqueued(jid, False, "already queued")
    return Enqueued(jid, True)


def enqueue_partitions(
    conn: Redis,
    config_path: str,
    parts: int,
    kind: str = "evaluate-part",
    *,
    retry: Retry | None = DEFAULT_RETRY,
) -> list[Enqueued]:
    """Queue the ``parts`` partitions ``0/n … n-1/n`` of a partitioned ``kind``, one job each.

    Idle workers take them at once; each runs under its own lease, and the
    partitions are disjoint, so nothing is done twice. After the
    ``evaluate-part`` jobs, queue what needs the whole month evaluated: the
    ``evaluate`` job (sample, raise), or ``sample`` then the ``raise-part`` jobs.
    """
    spec = job_spec(kind)
    if spec.per != "partition":
        msg = f"{kind} jobs are not partitioned; partitioned: " + ", ".join(
            k for k, j in jobs.JOBS.items() if j.per == "partition"
        )
        raise ConfigError(msg)
    if not 1 <= parts <= jobs.MAX_PARTS:
        msg = f"partitions: {parts} is not between 1 and {jobs.MAX_PARTS}"
        raise ConfigError(msg, field="partitions")
    return [
        enqueue(conn, config_path, kind, jobs.part_name(k, parts), retry=retry)
        for k in range(parts)
    ]


# The functions RQ runs -------------------------------------------------------------------


def _owner() -> str:
    job = get_current_job()
    return guard.default_owner(job.id if job is not None else None)


def _run_guarded(config_path: str, key: str, step: Callable[[Runtime], list[StepResult]]) -> str:
    """Run ``step`` under the key's lease; a summary line, or why it was skipped.

    With the lease held, a sync run of the key left ``running`` was cut off
    with its worker: it is closed as ``interrupted`` before the step starts.
    """
    rt = jobs.runtime_for(config_path)
    with jobs.leased(rt, key, _owner()) as held_by:
        if held_by is not None:
            msg = (
                f"skipped {key}: already running as {held_by.owner} "
                f"(lease until {held_by.expires_at.isoformat()})"
            )
            log.warning(msg)
            return msg
        results = step(rt)
    errors = [e for r in results for e in r.errors]
    if errors:
        msg = f"{key}: " + "; ".join(errors)
        raise StepFailed(msg)
    summary = f"{key}: " + "; ".join(_timed(r) for r in results)
    log.info(summary)
    return summary


def _timed(result: StepResult) -> str:
    """A step's line in a job's summary: its counts, then its seconds when it was timed."""
    if result.seconds is None:
        return str(result)
    waited = f", waited {result.waited:.2f} s" if result.waited else ""
    return f"{result} ({result.seconds:.2f} s{waited})"


def run(config_path: str, kind: str, name: str | None = None) -> str:
    """The function RQ runs: job ``kind`` of the table (for source or channel ``name``)."""
    return _run_guarded(config_path, job_key(kind, name), lambda rt: jobs.run_job(rt, kind, name))


def kick(config_path: str, kind: str, name: str | None = None) -> str:
    """The cron target: enqueue the real job with its retry policy and unique id.

    RQ's cron cannot give a job an id, uniqueness or retries, so the cron
    enqueues this small job, which does. The slot is the minute the cron
    enqueued it, so two leaders firing the same minute make one job.
    """
    job = get_current_job()
    if job is None:
        msg = "kick runs as an RQ job only"
        raise QloopError(msg)
    fire_at = job.enqueued_at or utcnow()
    done = enqueue(job.connection, config_path, kind, name, fire_at=fire_at)
    log.info("cron %s", done)
    return str(done)
