"""track: follow each nonconformity's ticket until it is closed; flag overdue ones (R6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from core.connector import TicketStatusBatches
from core.loop._bulk import insert_rows, update_by_id
from core.loop.common import Partition, StepResult, audit_row, in_partition, log
from core.loop.ticket_reads import read_tickets
from core.records import TicketStatus
from core.runtime import Runtime
from core.store.models import AuditLog, Nonconformity

BATCH = 500
"""Tickets read per batch call and written per transaction."""


def _statuses(rt: Runtime, batch: Sequence[Any]) -> dict[str, TicketStatus | Exception]:
    """Each ticket's status by ref: one call per source that reads batches, else one per ticket.

    A ticket a batch failed for (retriable) is read again on its own, as a
    retry of that attempt; an error that is not a :class:`QloopError` goes up.
    """
    by_target: dict[str, list[str]] = {}
    for row in batch:
        by_target.setdefault(row.ticket_target, []).append(row.ticket_ref)
    return read_tickets(
        rt,
        "track: batch",
        by_target,
        lambda source: source.ticket_statuses if isinstance(source, TicketStatusBatches) else None,
        lambda source: source.ticket_status,
    )


def track(rt: Runtime, partition: Partition | None = None) -> StepResult:
    """Read the status of every open ticket; close what the ITSM closed; flag overdue ones.

    A ticket whose status did not change since the last read leaves its row as it is
    (``updated_at`` says when the nonconformity last changed, not when it was read).
    With ``partition`` ``(k, n)``, only the nonconformities whose ``id % n == k``
    (:func:`workers.jobs.track_part`): each row is read and written on its own,
    so the n partitions may run at once.
    """
    result = StepResult("track")
    now = rt.now()
    last_id = 0
    while True:
        with rt.db.session() as s:
            batch = list(
                s.execute(
                    select(
                        Nonconformity.id,
                        Nonconformity.ticket_ref,
                        Nonconformity.ticket_target,
                        Nonconformity.state,
                        Nonconformity.ticket_status,
                        Nonconformity.closed_at,
                        Nonconformity.overdue,
                    )
                    .where(Nonconformity.state == "ticketed", Nonconformity.id > last_id)
                    .where(in_partition(Nonconformity.id, partition))
                    .order_by(Nonconformity.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            last_id = batch[-1].id
            statuses = _statuses(rt, batch)
            rows: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
            for nc in batch:
                assert nc.ticket_ref is not None
                status = statuses[nc.ticket_ref]
                if isinstance(status, Exception):
                    result.errors.append(f"{nc.ticket_ref}: {status}")
                    log.warning("track %s failed: %s", nc.ticket_ref, status)
                    continue
                row = {
                    "id": nc.id,
                    "ticket_status": status.status,
                    "state": nc.state,
                    "closed_at": nc.closed_at,
                    "overdue": nc.overdue,
                    "updated_at": now,
                }
                if not status.is_done and status.status == nc.ticket_status:
                    result.counts["open"] += 1
                    continue  # read, nothing changed: its row stays as it is
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
                in_partition(Nonconformity.id, partition),
            )
            .values(overdue=True)
        )
        result.counts["overdue_flagged"] += flagged.rowcount  # type: ignore[attr-defined]
    return result
