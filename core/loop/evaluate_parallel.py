"""The evaluate step split into id ranges, evaluated at once by child processes.

The incidents the step selects are cut into ``n`` ranges of consecutive ids
holding about as many each; a forked child evaluates each range, batch by
batch, with the parent's evaluation instant, and writes its own rows in
short transactions (one per batch; on SQLite the writers take turns under
the store's busy timeout). An incident's record depends only on its own
facts, its policy, the instant and its source's tracking start, so the
stored records are the ones a single process stores; only their row ids
follow the order the children's inserts happened to take.

Each child opens its own engine (the parent's connections are never used
across the fork) and sends its counts back; the parent sums them. Should a
child fail, the batches it committed stay (as after a crash of the step:
the next run evaluates the rest) and the step raises once every child has
ended. Stores that cannot be shared between processes (in-memory SQLite)
and platforms without ``fork`` run the step in one process.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import traceback
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import func, select

from core.errors import StateError
from core.loop.common import StepResult
from core.loop.evaluate import due, due_from, evaluate_batches
from core.runtime import Runtime
from core.store.db import open_database, sqlite_file
from core.store.models import Incident

MIN_PER_PROCESS = 5000
"""Fewer selected incidents per process than this: one process (forking costs more)."""

log = logging.getLogger("qloop.loop")


def id_ranges(rt: Runtime, now: datetime, n: int, least: int) -> list[tuple[int, int | None]]:
    """Up to ``n`` ranges ``(first, stop)`` of ids, each holding about as many of the
    incidents due as of ``now``; together they cover every id (the first starts at 0,
    the last is open: ``stop`` None), so an incident falling due meanwhile is not left out.

    Fewer ranges when there are fewer than ``least`` incidents per range
    (none when that leaves one).
    """
    with rt.db.session() as s:
        conn = s.connection()
        selected = conn.execute(
            select(func.count()).select_from(due_from()).where(due(now))
        ).scalar_one()
        n = min(n, selected // max(1, least))
        if n <= 1:
            return []
        query = (
            select(Incident.id)
            .select_from(due_from())
            .where(due(now))
            .order_by(Incident.id)
            .limit(1)
        )
        cuts = [0] + [
            conn.execute(query.offset(selected * k // n)).scalar_one() for k in range(1, n)
        ]
    return [(cuts[k], cuts[k + 1] if k + 1 < n else None) for k in range(n)]


def _shareable(rt: Runtime) -> bool:
    """Whether other processes can open this store (not an in-memory SQLite database)."""
    return rt.db.dialect != "sqlite" or sqlite_file(rt.db.url) is not None


def _fork_context() -> Any:
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None


def evaluate_in_processes(
    rt: Runtime, processes: int, least: int | None = None
) -> StepResult | None:
    """The step run by up to ``processes`` children, one id range each; None when it is
    not worth it (fewer than ``least`` incidents a process, default MIN_PER_PROCESS) or not
    possible here: the caller then runs it in this process."""
    ctx = _fork_context()
    if ctx is None or not _shareable(rt):
        return None
    now = rt.now()
    ranges = id_ranges(rt, now, processes, MIN_PER_PROCESS if least is None else least)
    if not ranges:
        return None
    children = []
    for id_range in ranges:
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(rt, now, id_range, send), daemon=True)
        child.start()
        send.close()
        children.append((id_range, child, receive))
    result = StepResult("evaluate")
    failures = []
    for id_range, child, receive in children:
        try:
            kind, payload = receive.recv()
        except EOFError:
            kind, payload = "error", "the process ended without an answer"
        child.join()
        receive.close()
        if kind == "ok":
            result.add(payload)
        else:
            failures.append(f"ids from {id_range[0]}: {payload}")
        if child.exitcode != 0 and kind == "ok":
            failures.append(f"ids from {id_range[0]}: exit code {child.exitcode}")
    rt.report("evaluate", result.counts["evaluated"])
    if failures:
        msg = "evaluate in processes: " + "; ".join(failures)
        raise StateError(msg)
    return result


def _child(rt: Runtime, now: datetime, id_range: tuple[int, int | None], send: Connection) -> None:
    """A forked child: evaluate ``id_range`` with its own engine, send back ("ok", counts)
    or ("error", traceback)."""
    db = None
    try:
        db = open_database(rt.db.url, migrate_schema=False)
        own = dataclasses.replace(rt, db=db, clock=lambda: now, on_progress=None)
        send.send(("ok", evaluate_batches(own, id_range=id_range)))
    except BaseException:
        log.exception("evaluate: ids from %s failed", id_range[0])
        send.send(("error", traceback.format_exc(limit=-3)))
    finally:
        if db is not None:
            db.dispose()
        send.close()
