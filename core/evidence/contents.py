"""What goes into an evidence pack: each file as (name, chunks), read from the store lazily.

Every file is produced from the stored facts as of the pack's instant, rows
in chunks, so a large period never sits in memory as a whole. Decisions
beyond the SPEC:

- The nonconformities of the pack are those raised within the period (the
  configuration's time zone) and created at or before ``as_of``; each line
  holds the nonconformity as stored (closure only when closed by ``as_of``)
  and its full history (events at or before ``as_of``).
- The review decisions are the answers that people settled (``decided_by``
  not ``qloop``) within the period, at or before ``as_of``, with the audit
  entries of those settlements.
- Personal data is masked throughout (contacts, and phone numbers or
  e-mail addresses inside free text), as for a ``qa-read`` export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.compliance import seen_at
from core.conf import policy_rules
from core.export.month import month_tables
from core.export.writers import files_of
from core.privacy import mask_pii_text
from core.runtime import Runtime
from core.stamps import Stamps
from core.store.models import (
    AuditLog,
    ComplianceRecord,
    Incident,
    Match,
    Nonconformity,
    NonconformityEvent,
    Response,
)
from core.timeutil import iso

ROWS = 500
"""Rows read from the store per query."""
CHUNK = 64 * 1024

Entry = tuple[str, Iterable[bytes]]


def json_bytes(document: Any) -> bytes:
    """Canonical JSON: sorted keys, UTF-8, two-space indent, a final newline."""
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=2, default=str)
    return (text + "\n").encode("utf-8")


def _line(document: Any) -> bytes:
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def _buffered(lines: Iterable[bytes]) -> Iterator[bytes]:
    buf: list[bytes] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def export_entries(
    s: Session, rt: Runtime, months: Sequence[str], as_of: datetime
) -> Iterator[Entry]:
    """The export of each month and policy (CSV: incidents, indicators, nonconformities)."""
    for month in months:
        for name in sorted(rt.policies):
            tables = month_tables(s, rt, name, month, unmask=False, as_of=as_of)
            for file, data in files_of(f"qloop-{month}-{name}", "csv", tables, created=as_of):
                yield f"export/{month}/{file}", data


def _nc_document(nc: Nonconformity, key: str, source: str, events: list[Any]) -> dict[str, Any]:
    return {
        "id": nc.id,
        "incident": key,
        "source": source,
        "policy": nc.policy,
        "policy_version": nc.policy_version,
        "rule": nc.rule,
        "severity": nc.severity,
        "raised_at": iso(nc.raised_at),
        "deadline": iso(nc.deadline),
        "detail": mask_pii_text(nc.detail),
        "evidence_ref": nc.evidence_ref,
        "state": nc.state,
        "overdue": nc.overdue,
        "ticket": {
            "target": nc.ticket_target,
            "ref": nc.ticket_ref,
            "url": nc.ticket_url,
            "status": nc.ticket_status,
        },
        "created_at": iso(nc.created_at),
        "revision": nc.revision,
        "history": events,
    }


def nonconformity_lines(
    s: Session, start: datetime, end: datetime, as_of: datetime
) -> Iterator[bytes]:
    """One JSON line per nonconformity raised in [start, end), with closure and history."""
    last_id = 0
    while True:
        rows = s.execute(
            select(Nonconformity, Incident.key, Incident.source)
            .join(Incident, Incident.id == Nonconformity.incident_id)
            .where(
                Nonconformity.raised_at >= start,
                Nonconformity.raised_at < end,
                Nonconformity.id > last_id,
            )
            .order_by(Nonconformity.id)
            .limit(ROWS)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0].id
        history: dict[int, list[dict[str, Any]]] = {}
        for event in s.scalars(
            select(NonconformityEvent)
            .where(NonconformityEvent.nonconformity_id.in_([r[0].id for r in rows]))
            .order_by(NonconformityEvent.nonconformity_id, NonconformityEvent.revision)
        ):
            if seen_at(event.at, as_of):
                history.setdefault(event.nonconformity_id, []).append(
                    {
                        "revision": event.revision,
                        "at": iso(event.at),
                        "kind": event.kind,
                        "changes": event.changes,
                        "reason": mask_pii_text(event.reason),
                    }
                )
        for nc, key, source in rows:
            if not seen_at(nc.created_at, as_of):
                continue
            doc = _nc_document(nc, key, source, history.get(nc.id, []))
            closed = nc.closed_at if nc.closed_at and seen_at(nc.closed_at, as_of) else None
            doc["closed_at"] = iso(closed)
            if closed is None and nc.state == "closed":
                doc["state"] = "ticketed"  # closed only after as_of
            yield _line(doc)
        s.expunge_all()


def review_lines(s: Session, start: datetime, end: datetime, as_of: datetime) -> Iterator[bytes]:
    """One JSON line per review decision a person made in [start, end), with its audit entry."""
    last_id = 0
    while True:
        rows = s.execute(
            select(Match, Response.channel, Response.kind, Response.occurred_at, Incident.key)
            .join(Response, Response.id == Match.response_id)
            .outerjoin(Incident, Incident.id == Match.incident_id)
            .where(
                Match.decided_by != "qloop",
                Match.decided_at >= start,
                Match.decided_at < end,
                Match.id > last_id,
            )
            .order_by(Match.id)
            .limit(ROWS)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0].id
        audits: dict[str, list[dict[str, Any]]] = {}
        for entry in s.scalars(
            select(AuditLog)
            .where(
                AuditLog.entity == "match",
                AuditLog.entity_id.in_([str(r[0].id) for r in rows]),
            )
            .order_by(AuditLog.at, AuditLog.id)
        ):
            if seen_at(entry.at, as_of):
                audits.setdefault(entry.entity_id or "", []).append(
                    {
                        "at": iso(entry.at),
                        "actor": entry.actor,
                        "action": entry.action,
                        "detail": json.loads(mask_pii_text(json.dumps(entry.detail)) or "{}"),
                    }
                )
        for match, channel, kind, occurred_at, key in rows:
            if not seen_at(match.decided_at, as_of):
                continue
            yield _line(
                {
                    "review_item": match.id,
                    "answer": {"channel": channel, "kind": kind, "occurred_at": iso(occurred_at)},
                    "decision": match.status,
                    "incident": key,
                    "method": match.method,
                    "reason": mask_pii_text(match.reason),
                    "decided_at": iso(match.decided_at),
                    "decided_by": match.decided_by,
                    "audit": audits.get(str(match.id), []),
                }
            )
        s.expunge_all()


def stored_versions(s: Session, months: Sequence[str]) -> list[dict[str, Any]]:
    """The policy versions and version stamps of the period's stored compliance records."""
    rows = s.execute(
        select(
            ComplianceRecord.policy,
            ComplianceRecord.policy_version,
            ComplianceRecord.qloop_version,
            ComplianceRecord.holidays_version,
            func.count(),
        )
        .where(ComplianceRecord.month.in_(list(months)))
        .group_by(
            ComplianceRecord.policy,
            ComplianceRecord.policy_version,
            ComplianceRecord.qloop_version,
            ComplianceRecord.holidays_version,
        )
    ).all()
    out = [
        {
            "policy": policy,
            "policy_version": version,
            "qloop": qloop,
            "holidays": holidays,
            "records": count,
        }
        for policy, version, qloop, holidays, count in rows
    ]
    return sorted(out, key=lambda d: tuple(str(d[k]) for k in sorted(d)))


def policies_document(rt: Runtime, stored: list[dict[str, Any]]) -> dict[str, Any]:
    """The policies in force (their versions and rules) and the versions the records carry."""
    current = {}
    for name, pol in sorted(rt.policies.items()):
        cal = rt.config.calendars.get(pol.calendar.name)
        current[name] = {
            "version": pol.version,
            "rules": policy_rules(pol, cal) if cal is not None else None,
        }
    return {"in_force": current, "stored_records": stored}


def versions_document(stored: list[dict[str, Any]]) -> dict[str, Any]:
    """qloop's and the holiday data's versions now, and those the period's records carry."""
    now = Stamps.current()
    return {
        "current": {"qloop": now.qloop, "holidays": now.holidays},
        "records": sorted(
            {(str(d["qloop"]), str(d["holidays"])) for d in stored},
        ),
    }
