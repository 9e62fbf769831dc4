"""The loop's steps as jobs taking plain names, for the embedded scheduler and RQ.

Each job opens (once per process) the runtime of the config file it is
given, then runs core steps; every step is idempotent, so a job run twice
does no harm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import connectors  # noqa: F401  registers the built-in connector types
from core.conf import load_config
from core.errors import StateError
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
from core.runtime import Runtime, open_runtime
from workers import guard

log = logging.getLogger("qloop.jobs")

_RUNTIMES: dict[str, Runtime] = {}


def runtime_for(config_path: str) -> Runtime:
    """The process's runtime for ``config_path`` (built and migrated on first use)."""
    key = str(Path(config_path).resolve())
    if key not in _RUNTIMES:
        _RUNTIMES[key] = open_runtime(load_config(Path(config_path)))
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


def shared_step(rt: Runtime, name: str, step: Callable[[], StepResult]) -> StepResult:
    """Run a step that works on every source's or channel's rows (plan, reconcile) alone.

    Jobs of different sources or channels run at the same time on different
    workers, but two plans (or two reconciles) at once would both act on the
    same new rows; the second waits for the first under a database lease
    (:mod:`workers.guard`), then runs and picks up whatever is left.
    """
    owner = guard.default_owner()
    deadline = time.monotonic() + SHARED_WAIT_S
    while True:
        with guard.lease(rt.db, f"shared:{name}", owner) as held_by:
            if held_by is None:
                return step()
        if time.monotonic() > deadline:
            msg = f"{name}: still held by {held_by.owner} after {SHARED_WAIT_S:.0f} s"
            raise StateError(msg)
        time.sleep(0.2)


def close_cut_off_runs(rt: Runtime, key: str) -> None:
    """Close the sync runs of job ``key`` that a killed process left ``running``.

    Call it only while holding the key's lease: no run of the key can then
    be alive, so a run still marked ``running`` was cut off (its committed
    batches stand; the step resumes from its cursor).
    """
    kind, _, name = key.partition(":")
    if kind == "sync":
        covered = (name, "pull")
    elif kind == "collect":
        covered = (collect_state_name(name), "collect")
    else:
        return
    if close_interrupted_runs(rt, *covered):
        log.warning("%s: closed a run cut off with its process; resuming from its cursor", key)


def job_keys(rt: Runtime) -> list[str]:
    """The lease keys of every job of the config: ``sync:*``, ``collect:*``, then the rest."""
    return [
        *(guard.job_key("sync", name) for name in rt.source_names()),
        *(guard.job_key("collect", name) for name in rt.channel_names()),
        *(guard.job_key(kind) for kind in ("dispatch", "evaluate", "track")),
    ]


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
    """Pull one source and plan what its changes call for."""
    return [pull(rt, source), shared_step(rt, "plan", lambda: plan(rt))]


def dispatch(rt: Runtime) -> list[StepResult]:
    """Send everything due in the outbox."""
    return [push(rt)]


def collect_channel(rt: Runtime, channel: str) -> list[StepResult]:
    """Collect one channel's outcomes and match them to incidents."""
    return [collect(rt, channel), shared_step(rt, "reconcile", lambda: reconcile(rt))]


def evaluate_all(rt: Runtime) -> list[StepResult]:
    """Evaluate what changed, draw due survey samples, raise nonconformities."""
    return [evaluate(rt), sample_surveys(rt), raise_nonconformities(rt)]


def track_tickets(rt: Runtime) -> list[StepResult]:
    """Follow nonconformity tickets until they are closed; prune the audit log (hourly)."""
    return [track(rt), shared_step(rt, "housekeeping", lambda: prune_audit(rt))]


def deliver(rt: Runtime) -> list[StepResult]:
    """Send last month's report to the configured recipients, once (:mod:`workers.delivery`)."""
    from workers.delivery import deliver_reports

    return [deliver_reports(rt)]
