"""What the CLI prints: loop progress, outbox and review listings, exports."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from core.conf.masking import scrub
from core.errors import InputError, NotFoundError, StateError
from core.export.month import export_month
from core.loop import run_once
from core.loop.common import StepResult
from core.loop.push import replay_dead
from core.loop.reconcile import resolve_review
from core.runtime import Runtime
from core.states import OutboxState
from core.store.models import Incident, Match, OutboxItem, Response


def live_progress(step: str, done: int) -> None:
    """Overwrite one terminal line with a long step's count (only on a terminal)."""
    if sys.stdout.isatty():
        print(f"\r  {step}: {done}…\x1b[K", end="", flush=True)


def _progress(name: str, result: StepResult, elapsed: float) -> None:
    if sys.stdout.isatty():
        print("\r\x1b[K", end="")
    print(f"  {result!s:<70} {elapsed:6.2f}s", flush=True)
    for err in result.errors:
        print(f"    ! {scrub(err)}", file=sys.stderr)


def print_job(name: str, results: list[StepResult]) -> None:
    print(f"[{name}] " + "; ".join(str(r) for r in results), flush=True)


def run_cycles(rt: Runtime, cycles: int = 1, quiet: bool = False) -> int:
    """Run the loop ``cycles`` times; exit status 1 if any step reported an error."""
    if cycles < 1:
        msg = f"cycles must be at least 1, got {cycles}"
        raise InputError(msg)
    failed = False
    if not quiet:
        rt.on_progress = live_progress
    for n in range(1, cycles + 1):
        if not quiet:
            print(f"loop {n}/{cycles}", flush=True)
        summary = run_once(rt, progress=None if quiet else _progress)
        failed = failed or bool(summary.errors)
        notices = send_complaint_notices(rt)
        if notices is not None and not quiet:
            _progress("complaint notices", notices, 0.0)
        failed = failed or bool(notices and notices.errors)
    return 1 if failed else 0


def send_complaint_notices(rt: Runtime) -> StepResult | None:
    """Send the complaint notices the loop queued (None: complaints are not configured)."""
    if rt.config.complaints is None:
        return None
    from workers.complaint_notices import send_notices

    return send_notices(rt)


def export(
    rt: Runtime,
    period: str,
    fmt: str,
    out: Path,
    *,
    unmask: bool = False,
    policy: str | None = None,
    as_of: datetime | None = None,
) -> list[Path]:
    """Write the export of ``period`` for each policy (or one); returns the files."""
    return export_month(rt, period, fmt, out, unmask=unmask, policy=policy, as_of=as_of)


OUTBOX_STATES = tuple(OutboxState)
"""The states of an outbox item (``qloop outbox list --state``)."""


def _check_replayable(rt: Runtime, ids: list[int]) -> None:
    """Every id must be an outbox item that is dead; else a StateError naming them."""
    with rt.db.session() as s:
        states = dict(
            s.execute(select(OutboxItem.id, OutboxItem.state).where(OutboxItem.id.in_(ids))).all()
        )
    missing = [str(i) for i in ids if i not in states]
    if missing:
        msg = f"no outbox item {', '.join(missing)} (see `qloop outbox list`)"
        raise NotFoundError(msg)
    alive = [f"{i} is {states[i]}" for i in ids if states[i] != "dead"]
    if alive:
        msg = f"only dead items are replayed: {', '.join(alive)}"
        raise StateError(msg)


def outbox(rt: Runtime, action: str, ids: Iterable[int], state: str | None) -> int:
    if state is not None and state not in OUTBOX_STATES:
        msg = f"unknown outbox state {state!r}; known: {', '.join(OUTBOX_STATES)}"
        raise InputError(msg)
    if action == "replay":
        wanted = list(dict.fromkeys(ids))
        if wanted:
            _check_replayable(rt, wanted)
        count = replay_dead(rt, wanted or None)
        print(f"{count} dead item(s) put back in the outbox")
        return 0
    with rt.db.session() as s:
        counts = dict(
            s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
        )
        print("outbox: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        query = select(OutboxItem).order_by(OutboxItem.id)
        query = (
            query.where(OutboxItem.state == state)
            if state
            else query.where(OutboxItem.state.in_(("pending", "sending", "dead")))
        )
        for item in s.scalars(query.limit(200)):
            print(
                f"{item.id:>6} {item.state:<8} {item.kind:<8} {item.target:<16} "
                f"tries={item.attempts} {item.idempotency_key}"
                + (f"\n         last error: {item.last_error}" if item.last_error else "")
            )
    return 0


def review(
    rt: Runtime, action: str, item_id: int | None, incident_id: int | None, note: str | None
) -> int:
    if action == "list":
        with rt.db.session() as s:
            rows = s.execute(
                select(Match, Response)
                .join(Response, Response.id == Match.response_id)
                .where(Match.status == "review")
                .order_by(Match.id)
            )
            n = 0
            for match, resp in rows:
                n += 1
                cands = ", ".join(str(c) for c in match.candidates) or "-"
                print(
                    f"{match.id:>6} {resp.kind:<16} {resp.channel:<14} "
                    f"{resp.occurred_at.isoformat()} {match.reason} (candidates: {cands})"
                )
            print(f"{n} item(s) waiting for review")
        return 0
    if item_id is None:
        msg = f"review {action} needs the review item id"
        raise InputError(msg)
    if action == "match":
        if incident_id is None:
            msg = "review match needs --incident ID"
            raise InputError(msg)
        with rt.db.session() as s:
            if s.get(Incident, incident_id) is None:
                msg = f"incident {incident_id} does not exist"
                raise InputError(msg)
    resolve_review(rt, item_id, incident_id if action == "match" else None, actor="cli", note=note)
    outcome = f"matched to incident {incident_id}" if action == "match" else "dismissed"
    print(f"review item {item_id}: {outcome}")
    return 0
