"""housekeeping: delete audit entries older than the retention (``audit.retention_days``).

The audit log records what people do (exports, settled reviews, replays,
resyncs, triggered syncs, token use), not machine traffic, and keeps it for
the configured number of days (default 365). Entries are deleted in
batches, oldest first, so a first run over a large log does not hold one
long transaction.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from core.loop.common import StepResult
from core.runtime import Runtime
from core.store.models import AuditLog

BATCH = 5000


def prune_audit(rt: Runtime) -> StepResult:
    """Delete the audit entries written before now − ``audit_retention_days``."""
    result = StepResult("housekeeping")
    cutoff = rt.now() - timedelta(days=rt.config.audit_retention_days)
    while True:
        with rt.db.session() as s:
            old = select(AuditLog.id).where(AuditLog.at < cutoff)
            ids = list(s.scalars(old.order_by(AuditLog.id).limit(BATCH)))
            if ids:
                s.execute(delete(AuditLog).where(AuditLog.id.in_(ids)))
        result.counts["audit_deleted"] += len(ids)
        if len(ids) < BATCH:
            return result
