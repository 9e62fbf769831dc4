"""The export's ``nonconformities`` table: one row per nonconformity of the month's incidents.

QA checks each nonconformity's resolution, raised-at, deadline, state and
ticket without reading the database. From the store: every nonconformity of
the month's incidents under the policy, withdrawn ones included (with their
``withdrawn_at``). As of an instant: one row per finding recomputed at that
instant, with the stored nonconformity's ticket and state as they were then
(``not_raised`` when it did not exist yet; the ticket's status in the ITSM
is only known now, so it is left empty). Times are in the display zone;
``detail`` has personal data masked unless the caller may see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InputError
from core.export.as_of import Judged, Period
from core.export.rows import closing_result
from core.export.writers import Table
from core.privacy import mask_pii_text
from core.store.models import ComplianceRecord, Incident, Nonconformity
from core.timeutil import local_iso, parse_instant

NAME = "nonconformities"
NC_COLUMNS: tuple[str, ...] = (
    "source",
    "incident_key",
    "rule",
    "severity",
    "resolution",
    "raised_at",
    "deadline",
    "state",
    "ticket_ref",
    "ticket_url",
    "ticket_status",
    "closed_at",
    "overdue",
    "revision",
    "withdrawn_at",
    "detail",
)


def _resolution(key: str, tz: tzinfo) -> str:
    """``response`` as it is; a resolution instant in the display zone."""
    try:
        return parse_instant(key).astimezone(tz).isoformat()
    except InputError:
        return key


def _detail(text: str, unmask: bool) -> str:
    return text if unmask else mask_pii_text(text) or text


def nc_rows(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    tz: tzinfo,
    unmask: bool = False,
) -> Iterator[dict[str, Any]]:
    """The stored nonconformities of the month's incidents (ordered by incident, raised-at)."""
    query = (
        select(
            Incident.source,
            Incident.key,
            Nonconformity.rule,
            Nonconformity.severity,
            Nonconformity.resolution_key,
            Nonconformity.raised_at,
            Nonconformity.deadline,
            Nonconformity.state,
            Nonconformity.ticket_ref,
            Nonconformity.ticket_url,
            Nonconformity.ticket_status,
            Nonconformity.closed_at,
            Nonconformity.overdue,
            Nonconformity.revision,
            Nonconformity.withdrawn_at,
            Nonconformity.detail,
        )
        .join(Incident, Incident.id == Nonconformity.incident_id)
        .join(ComplianceRecord, ComplianceRecord.incident_id == Nonconformity.incident_id)
        .where(
            ComplianceRecord.policy == policy,
            ComplianceRecord.policy_version == version,
            ComplianceRecord.month == month,
            ComplianceRecord.cancelled.is_(False),
            Nonconformity.policy == policy,
        )
        .order_by(
            ComplianceRecord.resolved_at, Incident.id, Nonconformity.raised_at, Nonconformity.id
        )
        .execution_options(yield_per=2000)
    )
    for nc in closing_result(session.execute(query)):
        yield {
            "source": nc.source,
            "incident_key": nc.key,
            "rule": nc.rule,
            "severity": nc.severity,
            "resolution": _resolution(nc.resolution_key, tz),
            "raised_at": local_iso(nc.raised_at, tz),
            "deadline": local_iso(nc.deadline, tz),
            "state": nc.state,
            "ticket_ref": nc.ticket_ref,
            "ticket_url": nc.ticket_url,
            "ticket_status": nc.ticket_status,
            "closed_at": local_iso(nc.closed_at, tz),
            "overdue": nc.overdue,
            "revision": nc.revision,
            "withdrawn_at": local_iso(nc.withdrawn_at, tz),
            "detail": _detail(nc.detail, unmask),
        }


def nc_rows_as_of(period: Period, *, tz: tzinfo, unmask: bool = False) -> Iterator[dict[str, Any]]:
    """One row per finding of the period's incidents as of its instant."""
    for j in period.incidents:
        yield from finding_rows(j, period.as_of, tz=tz, unmask=unmask)


def finding_rows(
    j: Judged, as_of: datetime, *, tz: tzinfo, unmask: bool = False
) -> list[dict[str, Any]]:
    """One row per finding of a judged incident as of ``as_of`` (none without a finding)."""
    rows = []
    for f in j.evaluation.findings:
        nc = j.ncs[f.key]
        closed = nc is not None and nc.state == "closed"
        rows.append(
            {
                "source": j.incident.source,
                "incident_key": j.incident.key,
                "rule": f.rule,
                "severity": f.severity,
                "resolution": local_iso(f.resolution_at, tz) or "response",
                "raised_at": local_iso(f.raised_at, tz),
                "deadline": local_iso(f.deadline, tz),
                "state": nc.state if nc is not None else "not_raised",
                "ticket_ref": nc.ticket_ref if nc else None,
                "ticket_url": nc.ticket_url if nc else None,
                "ticket_status": None,
                "closed_at": local_iso(nc.closed_at, tz) if nc else None,
                "overdue": not closed and f.deadline < as_of,
                "revision": nc.revision if nc else None,
                "withdrawn_at": local_iso(nc.withdrawn_at, tz) if nc else None,
                "detail": _detail(f.detail, unmask),
            }
        )
    return rows


def nc_table(rows: Iterator[dict[str, Any]]) -> Table:
    return Table(NAME, NC_COLUMNS, rows)
