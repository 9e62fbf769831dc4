"""Small pieces the loop steps share: step counts, sync-run bookkeeping, restarts."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, true, update
from sqlalchemy.orm import Session

from core.conf.masking import scrub
from core.errors import RetriableError
from core.runtime import Runtime
from core.store.models import AuditLog, SourceState, SyncRun

log = logging.getLogger("qloop.loop")
T = TypeVar("T")

MAX_RESTARTS = 5
"""Retriable failures in a row, with no batch between them, before a pull or collect gives up."""
MAX_RESTART_WAIT_S = 30.0


@dataclass
class StepResult:
    """Counts of what a step did, by name (``created``, ``sent``, ``matched``…)."""

    step: str
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float | None = field(default=None, compare=False)
    """Wall seconds the step took, when its runner timed it (the workers' jobs do)."""
    waited: float = field(default=0.0, compare=False)
    """Of those, the seconds spent waiting for another process's run of a shared step."""

    def add(self, other: StepResult) -> None:
        self.counts.update(other.counts)
        self.errors.extend(other.errors)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if v)
        return f"{self.step}: {parts or 'nothing to do'}"


Partition = tuple[int, int]
"""``(k, n)``: the rows whose id ``% n == k``; the n partitions are disjoint and cover all."""


def in_partition(column: Any, partition: Partition | None) -> ColumnElement[bool]:
    """``column % n == k`` for ``partition`` ``(k, n)``; always true for None (every row)."""
    if partition is None:
        return true()
    k, n = partition
    return cast("ColumnElement[bool]", column % n == k)


def in_scope(
    column: Any, names: Collection[str] | None, configured: Collection[str], others: bool
) -> ColumnElement[bool]:
    """The rows of a step limited to some sources or channels (``column``: their name).

    ``names`` None: every row. Otherwise the rows of ``names`` and, with
    ``others``, also those of names not in ``configured`` (a source or channel
    disabled or removed since): one job of several takes those, so a row
    left by one of them is still done by someone.
    """
    if names is None:
        return true()
    scope = column.in_(sorted(names))
    if others:
        scope = or_(scope, column.not_in(sorted(configured)) if configured else true())
    return cast("ColumnElement[bool]", scope)


def connector_state(session: Session, name: str) -> SourceState:
    state = session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name)
        session.add(state)
    return state


def set_cursor(session: Session, name: str, cursor: str | None) -> None:
    """Store ``name``'s cursor: one ``UPDATE`` statement, no ORM load of its state row.

    The row exists once a run started (:func:`start_run`); when it does not,
    it is added through :func:`connector_state`.
    """
    done = cast(
        CursorResult[Any],
        session.execute(
            update(SourceState).where(SourceState.name == name).values(cursor=cursor),
            execution_options={"synchronize_session": False},
        ),
    )
    if not done.rowcount:
        connector_state(session, name).cursor = cursor


def start_run(rt: Runtime, connector: str, kind: str) -> tuple[int, str | None]:
    """Record the start of a sync run; returns its id and the cursor to resume from."""
    with rt.db.session() as s:
        state = connector_state(s, connector)
        state.last_run_at = rt.now()
        run = SyncRun(
            connector=connector,
            kind=kind,
            started_at=rt.now(),
            status="running",
            cursor_before=state.cursor,
        )
        s.add(run)
        s.flush()
        return run.id, state.cursor


def close_interrupted_runs(rt: Runtime, connector: str, kind: str) -> int:
    """Mark ``connector``'s runs still ``running`` as ``interrupted``; returns how many.

    Only for a caller that knows no other run of ``connector`` can be alive,
    such as a worker holding its lease: the runs left ``running`` were then
    cut off (a killed worker) and their committed batches stand.
    """
    with rt.db.session() as s:
        runs = s.scalars(
            select(SyncRun).where(
                SyncRun.connector == connector, SyncRun.kind == kind, SyncRun.status == "running"
            )
        ).all()
        for run in runs:
            run.status = "interrupted"
            run.finished_at = rt.now()
            run.error = "cut off before it ended (worker stopped); its committed batches stand"
        return len(runs)


def first_sync_run(session: Session, connector: str) -> SyncRun | None:
    """The last run of ``connector`` that recorded the tool's own count (a first sync, §11)."""
    return session.scalars(
        select(SyncRun)
        .where(SyncRun.connector == connector, SyncRun.tool_count.is_not(None))
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).first()


def collect_state_name(channel: str) -> str:
    """The name under which a channel's collect cursor and runs are kept."""
    return f"channel:{channel}"


def finish_run(
    rt: Runtime, run_id: int, connector: str, result: StepResult, error: str | None
) -> None:
    error = scrub(error)  # a remote may have echoed a secret, in any encoding
    with rt.db.session() as s:
        run = s.get(SyncRun, run_id)
        state = connector_state(s, connector)
        if run is not None:
            run.finished_at = rt.now()
            run.status = "failed" if error else "ok"
            run.cursor_after = state.cursor
            run.seen = result.counts["seen"]
            run.created = result.counts["created"]
            run.updated = result.counts["updated"]
            run.unchanged = result.counts["unchanged"]
            run.errors = len(result.errors) + result.counts["rejected"]
            run.error = error
        state.last_error = error
        if not error:
            state.last_ok_at = rt.now()


def resumable(
    open_stream: Callable[[str | None], Iterator[T]],
    load_cursor: Callable[[], str | None],
    on_retry: Callable[[RetriableError, int], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[T]:
    """Iterate a connector stream, resuming from the last committed cursor on retriable errors.

    A generator that raised cannot continue, so after a :class:`RetriableError`
    the stream is reopened from the cursor the caller committed last. It gives
    up after :data:`MAX_RESTARTS` failures in a row with no batch in between.
    """
    restarts = 0
    while True:
        try:
            for item in open_stream(load_cursor()):
                restarts = 0  # progress: only failures in a row count
                yield item
            return
        except RetriableError as exc:
            restarts += 1
            on_retry(exc, restarts)
            if restarts > MAX_RESTARTS:
                raise
            wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** (restarts - 1)
            sleep(min(max(wait, 0.0), MAX_RESTART_WAIT_S))


def audit_row(
    rt: Runtime,
    action: str,
    entity: str,
    entity_id: object,
    actor: str = "qloop",
    **detail: object,
) -> dict[str, Any]:
    """The columns of an audit entry, for a bulk insert (what :func:`audit` adds)."""
    return {
        "at": rt.now(),
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id) if entity_id is not None else None,
        "detail": dict(detail),
    }


def audit(
    session: Session,
    rt: Runtime,
    action: str,
    entity: str,
    entity_id: object,
    actor: str = "qloop",
    **detail: object,
) -> None:
    session.add(AuditLog(**audit_row(rt, action, entity, entity_id, actor, **detail)))


def replaying(first: Exception | None, call: Callable[[], T]) -> Callable[[], T]:
    """``call``, except that its first attempt raises ``first`` (a batch's answer) when given.

    Under ``rt.call`` a message a batch failed for is retried as if that
    batch had been its first attempt: same waits, same number of tries.
    """
    if first is None:
        return call
    pending = [first]

    def attempt() -> T:
        if pending:
            raise pending.pop()
        return call()

    return attempt
