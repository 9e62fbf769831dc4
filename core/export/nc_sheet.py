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

from sqlalchemy import Executable, String, select, type_coerce
from sqlalchemy.orm import Session

from core.errors import InputError
from core.export.as_of import Judged, Period
from core.export.local_time import LocalIso, stored_form
from core.export.rows import closing_result, month_records
from core.export.writers import CellKind, Table
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


def _local_resolution(key: str, local: LocalIso) -> str | None:
    """:func:`_resolution`, with the usual keys the fast way (no exception, no datetime)."""
    if key == "response":
        return key
    stored = stored_form(key)  # parse_instant of a UTC whole second: that instant
    if stored is not None:
        return local(stored)
    return _resolution(key, local.tz)


def _detail(text: str, unmask: bool) -> str:
    return text if unmask else mask_pii_text(text) or text


NC_KINDS: tuple[CellKind, ...] = tuple(
    "plain"
    if c in ("raised_at", "deadline", "closed_at", "withdrawn_at", "revision")
    else "flag"
    if c == "overdue"
    else "text"
    for c in NC_COLUMNS
)
"""What each column of :func:`nc_tuples` holds, for the CSV writer (instants, the
revision and the overdue flag from the store; every other text made safe)."""


def _nc_query(policy: str, version: str, month: str) -> Executable:
    """The month's stored nonconformities; instants as the driver gives them (see rows.py)."""
    return (
        select(
            Incident.source,
            Incident.key,
            Nonconformity.rule,
            Nonconformity.severity,
            Nonconformity.resolution_key,
            type_coerce(Nonconformity.raised_at, String),
            type_coerce(Nonconformity.deadline, String),
            Nonconformity.state,
            Nonconformity.ticket_ref,
            Nonconformity.ticket_url,
            Nonconformity.ticket_status,
            type_coerce(Nonconformity.closed_at, String),
            Nonconformity.overdue,
            Nonconformity.revision,
            type_coerce(Nonconformity.withdrawn_at, String),
            Nonconformity.detail,
        )
        .join(Incident, Incident.id == Nonconformity.incident_id)
        .join(ComplianceRecord, ComplianceRecord.incident_id == Nonconformity.incident_id)
        .where(
            *month_records(policy, version, month),
            ComplianceRecord.cancelled.is_(False),
            Nonconformity.policy == policy,
        )
        .order_by(
            ComplianceRecord.resolved_at, Incident.id, Nonconformity.raised_at, Nonconformity.id
        )
        .execution_options(yield_per=2000)
    )


def nc_tuples(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    tz: tzinfo,
    unmask: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """The stored nonconformities of the month's incidents (ordered by incident, raised-at).

    One tuple per nonconformity in NC_COLUMNS order, streamed as the driver
    gives the rows (instants formatted by :class:`LocalIso`).
    """
    local = LocalIso(tz)
    for (
        source,
        key,
        rule,
        severity,
        resolution_key,
        raised_at,
        deadline,
        state,
        ticket_ref,
        ticket_url,
        ticket_status,
        closed_at,
        overdue,
        revision,
        withdrawn_at,
        detail,
    ) in closing_result(session.connection().execute(_nc_query(policy, version, month))):
        yield (
            source,
            key,
            rule,
            severity,
            _local_resolution(resolution_key, local),
            local(raised_at),
            local(deadline),
            state,
            ticket_ref,
            ticket_url,
            ticket_status,
            local(closed_at),
            overdue,
            revision,
            local(withdrawn_at),
            _detail(detail, unmask),
        )


def nc_rows(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    tz: tzinfo,
    unmask: bool = False,
) -> Iterator[dict[str, Any]]:
    """The rows of :func:`nc_tuples` under their column names."""
    for row in nc_tuples(
        session, policy=policy, version=version, month=month, tz=tz, unmask=unmask
    ):
        yield dict(zip(NC_COLUMNS, row, strict=True))


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


def nc_table(
    rows: Iterator[dict[str, Any]] | Iterator[tuple[Any, ...]], *, tuples: bool = False
) -> Table:
    """The table of nonconformity rows: dicts, or the tuples of :func:`nc_tuples`."""
    if tuples:
        return Table(NAME, NC_COLUMNS, rows, tuples=True, kinds=NC_KINDS)
    return Table(NAME, NC_COLUMNS, rows)
