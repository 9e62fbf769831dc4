"""Fixtures for the RQ tests: a Redis URL, deterministic tokens, seeded runtimes, worker processes.

``redis_url`` uses ``QLOOP_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379``).
Without a database number in that URL each test picks one from 1–15 at
random; every test also gets its own ``QLOOP_QUEUE_PREFIX``, so its queues
and job ids are its own. Afterwards only the keys the test created are
deleted (never FLUSHALL/FLUSHDB), and its queues leave the shared sets.
Redis unreachable → skip, or fail under ``QLOOP_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.conf import load_config
from core.runtime import Runtime, open_runtime
from core.store.models import Incident, OutboxItem, StatusEvent
from tests.conftest import ROOT
from tests.utils.loop import FakeClock
from workers import jobs


@pytest.fixture
def deterministic_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make correlation tokens a counter (the sandbox channels seed their answers with them).

    Returns a function restarting the count, for the second of two compared runs.
    """
    counter = itertools.count(1)

    def token() -> str:
        return f"tok{next(counter):06d}"

    def restart() -> None:
        nonlocal counter
        counter = itertools.count(1)

    for module in ("core.loop.plan", "core.loop.sample"):  # the package re-exports same names
        monkeypatch.setattr(importlib.import_module(module), "new_token", token)
    return restart


@pytest.fixture
def seeded_runtime() -> Iterator[Callable[[Path, FakeClock], Runtime]]:
    """Give in-process jobs (``runtime_for``) a runtime on a fake clock; closed after the test."""
    seeded: list[str] = []

    def seed(path: Path, clock: FakeClock) -> Runtime:
        rt = open_runtime(load_config(path), clock=clock, sleep=clock.sleep)
        jobs.use_runtime(path, rt)
        seeded.append(str(path))
        return rt

    yield seed
    for key in seeded:
        jobs.forget_runtime(key)


WORKER_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from connectors.sandbox.source import SandboxSource
from core.conf import load_config
from core.runtime import open_runtime
from tests.utils.loop import FakeClock
from workers import jobs, queue, rq_worker

plain_pull = SandboxSource.pull

def slow_pull(self, cursor):
    for batch in plain_pull(self, cursor):
        yield batch
        time.sleep({delay!r})  # after the batch is committed: a kill lands mid-job

SandboxSource.pull = slow_pull
path = Path({config!r})
clock = FakeClock()
jobs.use_runtime(path, open_runtime(load_config(path), clock=clock, sleep=clock.sleep))
conn = queue.connect({redis_url!r})
worker = rq_worker.build_worker(conn, {kinds!r}, simple=True, name={name!r})
worker.work(burst=True, logging_level="WARNING")
"""


def spawn_worker(
    config: Path, redis_url: str, *, kinds: tuple[str, ...] = ("sync",), delay: float = 0.0
) -> subprocess.Popen[bytes]:
    """A real RQ worker in a child process, burst mode, on the sandbox source slowed by ``delay``.

    Its runtime runs on the tests' fixed clock, like the in-process runs it is compared with.
    """
    name = f"{os.environ['QLOOP_QUEUE_PREFIX']}w{uuid.uuid4().hex[:6]}"
    script = WORKER_SCRIPT.format(
        root=str(ROOT),
        delay=delay,
        config=str(config),
        redis_url=redis_url,
        kinds=list(kinds),
        name=name,
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def incident_state(rt: Runtime) -> dict[str, object]:
    """What a sync leaves behind, comparable across databases (no surrogate ids)."""
    with rt.db.session() as s:
        incidents = sorted(
            (i.source, i.external_id, i.fingerprint, i.revision, i.planned_revision)
            for i in s.scalars(select(Incident))
        )
        ext = {i.id: i.external_id for i in s.scalars(select(Incident))}
        events = sorted(
            (ext[e.incident_id], e.seq, e.status, e.category)
            for e in s.scalars(select(StatusEvent))
        )
        outbox = sorted((o.kind, o.target, o.state) for o in s.scalars(select(OutboxItem)))
    return {"incidents": incidents, "events": events, "outbox": outbox}
