"""The loop's steps as jobs taking plain names, for the embedded scheduler and RQ.

Each job opens (once per process) the runtime of the config file it is
given, then runs core steps; every step is idempotent, so a job run twice
does no harm.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import connectors  # noqa: F401  registers the built-in connector types
from core.campaign.run import run_campaigns
from core.complaints.following import PUSHED, follow_complaints
from core.complaints.raising import raise_complaints
from core.conf import AppConfig, load_config
from core.errors import ConfigError, StateError
from core.gcfreeze import old_objects_frozen
from core.loop import (
    collect,
    evaluate,
    plan,
    pull,
    push,
    raise_nonconformities,
    reconcile,
    sample_surveys,
    track,
)
from core.loop.common import StepResult, close_interrupted_runs, collect_state_name
from core.loop.housekeeping import prune_audit
from core.loop.push import FOLLOW_UPS
from core.runtime import Runtime, open_runtime
from workers import guard

log = logging.getLogger("qloop.jobs")

_RUNTIMES: dict[str, Runtime] = {}

Signature = tuple[int, int, int] | None
"""A config file's inode, size and modification time (None: it cannot be read)."""
_PREPARED: dict[str, tuple[Signature, AppConfig]] = {}


def _signature(path: str) -> Signature:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def prepare(config_path: str | Path) -> None:
    """Load and validate ``config_path`` once, in a process that forks a work horse per job.

    RQ's worker forks a work horse for every job, and each used to read and
    validate the config again (JSON Schemas of every connector: about a
    fifth of a second a job). The horses inherit what is loaded here;
    :func:`runtime_for` uses it while the file is unchanged (same inode,
    size and modification time) and reads the file again otherwise. Nothing
    is opened: each horse connects to the store itself.
    """
    key = str(Path(config_path).resolve())
    signature = _signature(key)  # before reading: a change meanwhile makes it stale, not lost
    _PREPARED[key] = (signature, load_config(Path(key)))


def _config(key: str) -> AppConfig:
    """The config at ``key``: the one :func:`prepare` loaded if the file is unchanged."""
    prepared = _PREPARED.get(key)
    if prepared is not None and prepared[0] is not None and prepared[0] == _signature(key):
        return prepared[1]
    return load_config(Path(key))


def runtime_for(config_path: str) -> Runtime:
    """The process's runtime for ``config_path`` (built and migrated on first use)."""
    key = str(Path(config_path).resolve())
    if key not in _RUNTIMES:
        _RUNTIMES[key] = open_runtime(_config(key))
    return _RUNTIMES[key]


def use_runtime(config_path: str | Path, rt: Runtime) -> None:
    """Make ``rt`` the process's runtime for ``config_path`` (tests and embedding hosts).

    The runtime is closed by :func:`forget_runtime` or :func:`close_runtimes`.
    """
    _RUNTIMES[str(Path(config_path).resolve())] = rt


def forget_runtime(config_path: str | Path) -> None:
    """Close and drop the process's runtime for ``config_path``, if any."""
    rt = _RUNTIMES.pop(str(Path(config_path).resolve()), None)
    if rt is not None:
        rt.close()


def close_runtimes() -> None:
    """Close every runtime this process opened (worker shutdown)."""
    for key in list(_RUNTIMES):
        forget_runtime(key)


SHARED_WAIT_S = 600.0
"""How long a job waits for another worker's run of a shared step to end."""


def shared_step(
    rt: Runtime, name: str, step: Callable[[], StepResult], *, wait: bool = True
) -> StepResult:
    """Run a step that works on rows no job owns (the audit log's retention) alone.

    Two runs at once would both act on the same rows; the second waits for
    the first under a database lease (:mod:`workers.guard`), then runs and
    picks up whatever is left. Without ``wait`` it does not wait: the run
    under way does the work, and the result says ``skipped_running=1``.
    The seconds spent waiting are in the result's ``waited``.
    """
    owner = guard.default_owner()
    started = time.monotonic()
    deadline = started + SHARED_WAIT_S
    while True:
        with guard.lease(rt.db, f"shared:{name}", owner) as held_by:
            if held_by is None:
                waited = time.monotonic() - started
                result = step()
                result.waited = waited
                return result
        if not wait:
            skipped = StepResult(name)
            skipped.counts["skipped_running"] += 1
            return skipped
        if time.monotonic() > deadline:
            msg = f"{name}: still held by {held_by.owner} after {SHARED_WAIT_S:.0f} s"
            raise StateError(msg)
        time.sleep(0.2)


def timed_steps(*steps: Callable[[], StepResult]) -> list[StepResult]:
    """Run ``steps`` in order; each result carries its wall seconds (``seconds``)."""
    results = []
    for step in steps:
        started = time.perf_counter()
        result = step()
        result.seconds = time.perf_counter() - started
        results.append(result)
    return results


def _first(names: list[str], name: str) -> bool:
    """Whether ``name`` is the first of ``names``: its job also takes the rows of the others
    no longer enabled (:func:`core.loop.common.in_scope`)."""
    return bool(names) and names[0] == name


def close_cut_off_runs(rt: Runtime, key: str) -> None:
    """Close the sync runs of job ``key`` that a killed process left ``running``.

    Call it only while holding the key's lease: no run of the key can then
    be alive, so a run still marked ``running`` was cut off (its committed
    batches stand; the step resumes from its cursor).
    """
    kind, _, name = key.partition(":")
    spec = JOBS.get(kind)
    if spec is None or spec.runs_of is None or not name:
        return
    covered = spec.runs_of(name)
    if close_interrupted_runs(rt, *covered):
        log.warning("%s: closed a run cut off with its process; resuming from its cursor", key)


def job_keys(rt: Runtime) -> list[str]:
    """The lease keys of every job of the config, in :data:`JOBS` order."""
    return [job_key(kind, name) for kind, spec in JOBS.items() for name in spec.names(rt.config)]


@contextmanager
def leased_all(rt: Runtime, owner: str) -> Iterator[None]:
    """Hold every job's lease for the block (the whole loop in one process).

    Raises:
        StateError: another process runs one of the jobs (named, with who).
    """
    with ExitStack() as stack:
        busy = []
        for key in job_keys(rt):
            held_by = stack.enter_context(leased(rt, key, owner))
            if held_by is not None:
                busy.append(f"{key} ({held_by.owner})")
        if busy:
            msg = "running elsewhere on this store: " + ", ".join(busy) + "; try again when done"
            raise StateError(msg)
        yield


@contextmanager
def leased(rt: Runtime, key: str, owner: str) -> Iterator[guard.Holder | None]:
    """Hold job ``key``'s lease for the block (None), or yield who holds it (skip the work).

    Every process that runs a job takes it: RQ workers, the embedded
    scheduler, and the API's embedded syncs; with it held, the runs the key
    left ``running`` are closed first (:func:`close_cut_off_runs`).
    """
    with guard.lease(rt.db, key, owner) as held_by:
        if held_by is None:
            close_cut_off_runs(rt, key)
        yield held_by


def sync_source(rt: Runtime, source: str) -> list[StepResult]:
    """Pull one source and plan what its changes call for.

    The plan covers the source's own incidents (and, for the first enabled
    source, those of sources no longer enabled), so the syncs of several
    sources plan at once, each under its own ``sync:<source>`` lease.
    """
    others = _first(rt.source_names(), source)
    return timed_steps(lambda: pull(rt, source), lambda: plan(rt, sources=[source], others=others))


def dispatch(rt: Runtime) -> list[StepResult]:
    """Send everything due in the outbox."""
    return timed_steps(lambda: push(rt))


def dispatch_part(rt: Runtime, name: str) -> list[StepResult]:
    """Send what is due in one partition ``k/n`` of the outbox: items whose entity id % n == k.

    Each item is claimed by a compare-and-set before it is sent, so a
    partition racing another run of itself, or a whole ``dispatch``, sends
    nothing twice.
    """
    return timed_steps(lambda: push(rt, partition=parse_part(name, "dispatch-part")))


def collect_channel(rt: Runtime, channel: str) -> list[StepResult]:
    """Collect one channel's outcomes and match them to incidents.

    The reconcile covers the channel's own responses (and, for the first
    enabled channel, those of channels no longer enabled), so the collects
    of several channels reconcile at once, each under its ``collect:<channel>`` lease.
    """
    others = _first(rt.channel_names(), channel)
    return timed_steps(
        lambda: collect(rt, channel), lambda: reconcile(rt, channels=[channel], others=others)
    )


def evaluate_all(rt: Runtime) -> list[StepResult]:
    """Evaluate what changed, draw due survey samples, raise nonconformities."""
    return timed_steps(
        lambda: evaluate(rt), lambda: sample_surveys(rt), lambda: raise_nonconformities(rt)
    )


def sample(rt: Runtime) -> list[StepResult]:
    """Draw the due survey samples: the ``evaluate`` job's middle step, for a fan-out."""
    return timed_steps(lambda: sample_surveys(rt))


def raise_part(rt: Runtime, name: str) -> list[StepResult]:
    """Raise the nonconformities of one partition ``k/n``: records of incidents id % n == k."""
    return timed_steps(lambda: raise_nonconformities(rt, parse_part(name, "raise-part")))


PART_PATTERN = re.compile(r"^(0|[1-9][0-9]{0,3})/([1-9][0-9]{0,3})$")
MAX_PARTS = 1024


def part_name(k: int, n: int) -> str:
    """The name of partition ``k`` of ``n``: ``"0/2"``."""
    return f"{k}/{n}"


def parse_part(name: str, kind: str = "evaluate-part") -> tuple[int, int]:
    """``"k/n"`` as ``(k, n)``; ConfigError unless ``0 <= k < n <= MAX_PARTS``."""
    found = PART_PATTERN.match(name)
    k, n = (int(found.group(1)), int(found.group(2))) if found else (-1, 0)
    if not 0 <= k < n <= MAX_PARTS:
        what = kind.removesuffix("-part")
        msg = f"{what} partition {name!r}: write k/n with 0 <= k < n <= {MAX_PARTS} (0/2, 1/2)"
        raise ConfigError(msg, field="partition")
    return k, n


def evaluate_part(rt: Runtime, name: str) -> list[StepResult]:
    """Evaluate one partition ``k/n`` of what changed: the incidents with ``id % n == k``.

    The n partitions are disjoint, so n workers run them at once, each under
    its own lease (``evaluate-part:0/2``…). Sampling and raising need the
    whole month evaluated: the ``evaluate`` job runs them once every
    partition is done (:func:`workers.queue.enqueue_partitions`). Should a
    whole ``evaluate`` (a cron fire) overlap a partition, the record of an
    incident both insert is refused once by its unique key
    ``(incident, policy, version)``: that job fails, nothing is stored
    twice, and its retry finds the incident evaluated.
    """
    k, n = parse_part(name)
    return timed_steps(lambda: evaluate(rt, partition=(k, n)))


def track_tickets(rt: Runtime) -> list[StepResult]:
    """Follow nonconformity tickets until they are closed; prune the audit log (hourly)."""
    return timed_steps(
        lambda: track(rt), lambda: shared_step(rt, "housekeeping", lambda: prune_audit(rt))
    )


def track_part(rt: Runtime, name: str) -> list[StepResult]:
    """Follow the tickets of one partition ``k/n`` (nonconformity id % n == k); prune the audit
    log unless another job is pruning it (then that one does)."""
    partition = parse_part(name, "track-part")
    return timed_steps(
        lambda: track(rt, partition),
        lambda: shared_step(rt, "housekeeping", lambda: prune_audit(rt), wait=False),
    )


def complaint_steps(rt: Runtime) -> list[StepResult]:
    """Raise complaints, push their tickets, follow them, push follow-up calls, send notices."""
    from workers.complaint_notices import send_notices

    return timed_steps(
        lambda: raise_complaints(rt),
        lambda: push(rt, kinds=(*PUSHED, *FOLLOW_UPS)),
        lambda: follow_complaints(rt),
        lambda: push(rt, kinds=PUSHED),
        lambda: send_notices(rt),
    )


def deliver(rt: Runtime) -> list[StepResult]:
    """Send last month's report to the configured recipients, once (:mod:`workers.delivery`)."""
    from workers.delivery import deliver_reports

    return timed_steps(lambda: deliver_reports(rt))


# The job table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One kind of job: what it runs, once per what, on which schedule.

    Attributes:
        kind: the job's kind, also its RQ queue and the start of its lease key.
        per: ``"source"`` or ``"channel"`` for a job run once per enabled source
            or channel (named ``sync:itsm``), ``"partition"`` for a job run once per
            partition ``k/n`` of its work (enqueued by hand or by a fan-out, never
            by the cron), None for one run once per deployment.
        run: the steps, given the runtime and the source or channel name (None).
        help: one line for logs and the CLI.
        runs_of: for a named job, the ``(state name, step)`` of the sync runs it
            leaves ``running`` when its process is killed (:func:`close_cut_off_runs`).
        wanted: whether the config schedules the job at all (default: always).
    """

    kind: str
    per: Literal["source", "channel", "partition"] | None
    run: Callable[[Runtime, str | None], list[StepResult]]
    help: str
    runs_of: Callable[[str], tuple[str, str]] | None = None
    wanted: Callable[[AppConfig], bool] | None = None

    def cron(self, cfg: AppConfig, name: str | None) -> str:
        """The job's cron string (UTC): the source's or channel's, else the config's."""
        if self.per == "source" and name:
            return cfg.sources[name].schedule
        if self.per == "channel" and name:
            return cfg.channels[name].schedule
        return cfg.schedules[self.kind]

    def names(self, cfg: AppConfig) -> list[str | None]:
        """Whom the job runs for: each enabled source or channel, or [None] (once)."""
        if self.wanted is not None and not self.wanted(cfg):
            return []
        if self.per == "source":
            return [n for n, s in cfg.sources.items() if s.enabled]
        if self.per == "channel":
            return [n for n, c in cfg.channels.items() if c.enabled]
        if self.per == "partition":
            return []  # not scheduled: a fan-out enqueues the parts it wants
        return [None]


def _named(run: Callable[[Runtime, str], list[StepResult]]) -> Callable[..., list[StepResult]]:
    def call(rt: Runtime, name: str | None) -> list[StepResult]:
        if not name:
            msg = f"{run.__name__} needs a source or channel name"
            raise ConfigError(msg)
        return run(rt, name)

    return call


JOBS: dict[str, Job] = {
    job.kind: job
    for job in (
        Job("sync", "source", _named(sync_source), "pull a source, plan", lambda n: (n, "pull")),
        Job("dispatch", None, lambda rt, _: dispatch(rt), "send what is due in the outbox"),
        Job(
            "dispatch-part",
            "partition",
            _named(dispatch_part),
            "send one partition k/n (entity id % n == k)",
        ),
        Job(
            "collect",
            "channel",
            _named(collect_channel),
            "collect a channel's outcomes, reconcile",
            lambda n: (collect_state_name(n), "collect"),
        ),
        Job("evaluate", None, lambda rt, _: evaluate_all(rt), "evaluate, sample, raise NCs"),
        Job(
            "evaluate-part",
            "partition",
            _named(evaluate_part),
            "evaluate one partition k/n (incident id % n == k)",
        ),
        Job(
            "sample",
            None,
            lambda rt, _: sample(rt),
            "draw due survey samples",
            wanted=lambda _: False,
        ),
        Job(
            "raise-part",
            "partition",
            _named(raise_part),
            "raise NCs of one partition k/n (incident id % n == k)",
        ),
        Job("track", None, lambda rt, _: track_tickets(rt), "follow NC tickets, prune audit"),
        Job(
            "track-part",
            "partition",
            _named(track_part),
            "follow NC tickets of one partition k/n (NC id % n == k)",
        ),
        Job(
            "campaigns",
            None,
            lambda rt, _: [run_campaigns(rt)],
            "collect campaign answers, send due reminders, close ended campaigns",
            wanted=lambda cfg: bool(cfg.campaigns),
        ),
        Job(
            "complaints",
            None,
            lambda rt, _: complaint_steps(rt),
            "raise, follow, notify complaints",
            wanted=lambda cfg: cfg.complaints is not None,
        ),
        Job(
            "deliver",
            None,
            lambda rt, _: deliver(rt),
            "send last month's report, once",
            wanted=lambda cfg: bool(cfg.reports.send),
        ),
    )
}
"""Every kind of job, in priority order: queues, cron, the scheduler, leases and the CLI read it."""

KINDS: tuple[str, ...] = tuple(JOBS)
"""The kinds of job (one RQ queue each), in :data:`JOBS` order."""


def job_spec(kind: str) -> Job:
    """The :class:`Job` of ``kind``; ConfigError naming the known kinds otherwise."""
    if kind not in JOBS:
        msg = f"unknown kind of job {kind!r}; known: {', '.join(JOBS)}"
        raise ConfigError(msg)
    return JOBS[kind]


def job_key(kind: str, name: str | None = None) -> str:
    """The lease key of a job: ``sync:itsm``, ``collect:phone``, ``dispatch``…"""
    spec = job_spec(kind)
    if spec.per is None:
        return kind
    if not name:
        msg = f"a {kind} job needs a {spec.per} name"
        raise ConfigError(msg)
    if spec.per == "partition":
        parse_part(name, kind)  # ConfigError for a malformed k/n
    return f"{kind}:{name}"


def scheduled(cfg: AppConfig) -> list[tuple[str, str | None, str]]:
    """``(kind, name, cron)`` of every job the config schedules, in :data:`JOBS` order."""
    return [
        (kind, name, spec.cron(cfg, name))
        for kind, spec in JOBS.items()
        for name in spec.names(cfg)
    ]


def run_job(rt: Runtime, kind: str, name: str | None = None) -> list[StepResult]:
    """Run the steps of job ``kind`` (for source or channel ``name``).

    The objects alive before the job stay out of the cyclic GC's
    collections while it runs, as in :func:`core.loop.run_once`.
    """
    spec = job_spec(kind)
    with old_objects_frozen():
        return spec.run(rt, name)
