"""The loop's steps as jobs taking plain names, for the embedded scheduler and RQ.

Each job opens (once per process) the runtime of the config file it is
given, then runs core steps; every step is idempotent, so a job run twice
does no harm.
"""

from __future__ import annotations

from pathlib import Path

import connectors  # noqa: F401  registers the built-in connector types
from core.conf import load_config
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
from core.loop.common import StepResult
from core.runtime import Runtime, open_runtime

_RUNTIMES: dict[str, Runtime] = {}


def runtime_for(config_path: str) -> Runtime:
    """The process's runtime for ``config_path`` (built and migrated on first use)."""
    key = str(Path(config_path).resolve())
    if key not in _RUNTIMES:
        _RUNTIMES[key] = open_runtime(load_config(Path(config_path)))
    return _RUNTIMES[key]


def sync_source(rt: Runtime, source: str) -> list[StepResult]:
    """Pull one source and plan what its changes call for."""
    return [pull(rt, source), plan(rt)]


def dispatch(rt: Runtime) -> list[StepResult]:
    """Send everything due in the outbox."""
    return [push(rt)]


def collect_channel(rt: Runtime, channel: str) -> list[StepResult]:
    """Collect one channel's outcomes and match them to incidents."""
    return [collect(rt, channel), reconcile(rt)]


def evaluate_all(rt: Runtime) -> list[StepResult]:
    """Evaluate what changed, draw due survey samples, raise nonconformities."""
    return [evaluate(rt), sample_surveys(rt), raise_nonconformities(rt)]


def track_tickets(rt: Runtime) -> list[StepResult]:
    """Follow nonconformity tickets until they are closed."""
    return [track(rt)]
