"""What the partitioned-job tests share (tests/workers/test_partitioned_jobs.py,
test_evaluate_partitions.py): a month brought to the step under test, jobs run at once
through their RQ entry point, and a table's rows to compare a split run with a whole one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.loop import collect, plan, pull, push, reconcile
from core.runtime import Runtime
from workers import queue


def answered(rt: Runtime) -> None:
    """The month pulled, planned, sent, answered and matched: everything evaluate reads."""
    pull(rt, "itsm")
    plan(rt)
    push(rt)
    for channel in rt.channel_names():
        collect(rt, channel)
    reconcile(rt)


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` in threads released together; their results, in order (errors raised)."""
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(i: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    return results


def job(path: Path, kind: str, name: str | None = None) -> Callable[[], object]:
    """The RQ entry point of a job (its lease included), as a thread's call."""
    return lambda: queue.run(str(path), kind, name)


def table_rows(
    rt: Runtime, model: Any, order: Sequence[str], skip: Sequence[str] = ()
) -> list[Any]:
    """Every row of ``model`` as a dict of its columns but ids and ``skip``, in ``order``."""
    table = model.__table__
    cols = [c for c in table.columns if c.name != "id" and c.name not in skip]
    with rt.db.session() as s:
        query = select(*cols).order_by(*(table.c[o] for o in order))
        return [dict(r) for r in s.execute(query).mappings()]
