"""``qloop recompute --apply``: store the recomputed verdicts as compliance records (audited).

Each judged incident's record of (incident, policy, version judged under)
is updated, or inserted when that version has none; it carries the
recompute's ``as_of`` and the running versions. A record whose findings
changed is marked unraised, so the next nonconformity step brings the
nonconformities and their tickets in line (SPEC §10: a nonconformity says
what the current facts say).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.loop.common import audit
from core.recompute.diff import Recompute
from core.runtime import Runtime
from core.store.models import ComplianceRecord

_COLUMNS = frozenset(c.name for c in ComplianceRecord.__table__.columns) - {"id"}


def apply_recompute(rt: Runtime, rec: Recompute, *, actor: str) -> int:
    """Store the recompute's records; returns how many were written. Audit-logged."""
    written = 0
    with rt.db.session() as s:
        for name, judged in sorted(rec.judged.items()):
            for j, version in judged:
                values: dict[str, Any] = {k: v for k, v in j.values.items() if k in _COLUMNS}
                values |= {
                    "incident_id": j.incident.id,
                    "policy": name,
                    "policy_version": version,
                    "as_of": rec.as_of,
                    "qloop_version": rec.stamps.qloop,
                    "holidays_version": rec.stamps.holidays,
                }
                row = s.scalars(
                    select(ComplianceRecord).where(
                        ComplianceRecord.incident_id == j.incident.id,
                        ComplianceRecord.policy == name,
                        ComplianceRecord.policy_version == version,
                    )
                ).one_or_none()
                if row is None:
                    s.add(ComplianceRecord(**values, raised=False))
                else:
                    if row.findings != values["findings"]:
                        row.raised = False
                    for key, value in values.items():
                        setattr(row, key, value)
                written += 1
        audit(
            s,
            rt,
            "recompute.apply",
            "period",
            rec.period,
            actor=actor,
            as_of=rec.as_of.isoformat(),
            policy_version=rec.policy_version,
            records=written,
            changed=len(rec.changes),
            qloop=rec.stamps.qloop,
            holidays=rec.stamps.holidays,
        )
    return written
