"""track: follow each nonconformity's ticket until it is closed; flag overdue ones (R6)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from core.errors import QloopError
from core.loop._bulk import insert_rows, update_by_id
from core.loop.common import StepResult, audit_row, log
from core.runtime import Runtime
from core.store.models import AuditLog, Nonconformity

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
            rows: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
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
                row = {
                    "id": nc.id,
                    "ticket_status": status.status,
                    "state": nc.state,
                    "closed_at": nc.closed_at,
                    "overdue": nc.overdue,
                    "updated_at": now,
                }
                if status.is_done:
                    row.update(state="closed", closed_at=status.closed_at or now, overdue=False)
                    audits.append(
                        audit_row(
                            rt,
                            "nonconformity.closed",
                            "nonconformity",
                            nc.id,
                            ticket=nc.ticket_ref,
                            status=status.status,
                        )
                    )
                    result.counts["closed"] += 1
                else:
                    result.counts["open"] += 1
                rows.append(row)
            update_by_id(s, Nonconformity, rows)
            insert_rows(s, AuditLog, audits)
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
