"""track: follow each nonconformity's ticket until it is closed; flag overdue ones (R6)."""

from __future__ import annotations

from sqlalchemy import select, update

from core.errors import QloopError
from core.loop.common import StepResult, audit, log
from core.runtime import Runtime
from core.store.models import Nonconformity

BATCH = 200


def track(rt: Runtime) -> StepResult:
    """Read the status of every open ticket; close what the ITSM closed; flag overdue ones."""
    result = StepResult("track")
    now = rt.now()
    last_id = 0
    while True:
        with rt.db.session() as s:
            batch = list(
                s.scalars(
                    select(Nonconformity)
                    .where(Nonconformity.state == "ticketed", Nonconformity.id > last_id)
                    .order_by(Nonconformity.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            last_id = batch[-1].id
            for nc in batch:
                assert nc.ticket_ref is not None
                ref = nc.ticket_ref
                try:
                    status = rt.call(
                        lambda ref=ref, target=nc.ticket_target: (  # type: ignore[misc]
                            rt.source(target).ticket_status(ref)
                        )
                    )
                except QloopError as exc:
                    result.errors.append(f"{nc.ticket_ref}: {exc}")
                    log.warning("track %s failed: %s", nc.ticket_ref, exc)
                    continue
                nc.ticket_status = status.status
                if status.is_done:
                    nc.state, nc.closed_at = "closed", status.closed_at or now
                    nc.overdue = False
                    audit(
                        s,
                        rt,
                        "nonconformity.closed",
                        "nonconformity",
                        nc.id,
                        ticket=nc.ticket_ref,
                        status=status.status,
                    )
                    result.counts["closed"] += 1
                else:
                    result.counts["open"] += 1
                nc.updated_at = now
        rt.report("track", result.counts["closed"] + result.counts["open"])
    with rt.db.session() as s:
        flagged = s.execute(
            update(Nonconformity)
            .where(
                Nonconformity.state.in_(("open", "ticketed", "dead")),
                Nonconformity.deadline < now,
                Nonconformity.overdue.is_(False),
            )
            .values(overdue=True)
        )
        result.counts["overdue_flagged"] += flagged.rowcount  # type: ignore[attr-defined]
    return result
