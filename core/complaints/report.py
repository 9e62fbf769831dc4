"""The complaint report of a period (R5, R8): each complaint with its times and state.

:func:`complaint_report` reads the complaints received in ``[start, end)``
from the store; the report is plain data (:class:`ComplaintReport`) that
the review pack embeds and :func:`render_complaints` writes as JSON, HTML,
PDF or XLSX with the monthly report's renderers (labels from
``core/report/locale/complaints.<lang>.yaml``).

Durations are elapsed seconds from receipt to each milestone
(acknowledged, root cause, rectified, ticket closed, follow-up reached);
the medians are over the complaints that reached the milestone.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InputError
from core.privacy import mask_pii_text
from core.report import html, pdf, xlsx
from core.report.catalogue import Labels
from core.report.model import check_format, check_lang
from core.report.tables import Cell, ReportTable, Seconds
from core.stamps import Stamps
from core.states import ComplaintState
from core.store.models import Complaint, Incident
from core.timeutil import month_bounds, to_utc

MILESTONES = (
    "acknowledged_at",
    "root_cause_at",
    "rectified_at",
    "closed_at",
    "follow_up_reached_at",
)
"""The times of a complaint after its receipt, in the order they should happen."""


@dataclass(frozen=True)
class ComplaintRow:
    """One complaint as the report shows it."""

    key: str
    incident_key: str
    title: str
    source: str
    customer: str | None
    service: str | None
    origin: str
    detail: str
    state: str
    ticket_ref: str | None
    ticket_url: str | None
    ticket_status: str | None
    received_at: datetime
    deadline: datetime
    acknowledged_at: datetime | None
    root_cause_at: datetime | None
    rectified_at: datetime | None
    closed_at: datetime | None
    follow_up_reached_at: datetime | None
    escalated_at: datetime | None
    root_cause: str | None
    rectification: str | None
    follow_up: dict[str, Any] = field(default_factory=dict)

    def seconds_to(self, milestone: str) -> int | None:
        """Elapsed seconds from receipt to ``milestone`` (None: not reached)."""
        at = getattr(self, milestone)
        return None if at is None else int((at - self.received_at).total_seconds())


@dataclass(frozen=True)
class ComplaintReport:
    """The complaints received in ``[start, end)``, as of ``as_of``.

    Attributes:
        start: First instant of the period (UTC).
        end: First instant after it (UTC).
        as_of: When the facts were read (UTC).
        rows: Each complaint, oldest receipt first.
        counts: ``total``, ``state.<state>``, ``origin.<origin>``, ``escalated``,
            ``open_past_deadline``.
        medians: Median seconds from receipt to each milestone (``acknowledged_at``…),
            None when no complaint reached it.
    """

    start: datetime
    end: datetime
    as_of: datetime
    rows: tuple[ComplaintRow, ...]
    counts: dict[str, int]
    medians: dict[str, int | None]

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-able values (instants as ISO strings)."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "as_of": self.as_of.isoformat(),
            "counts": dict(self.counts),
            "medians": dict(self.medians),
            "complaints": [plain(asdict(r)) for r in self.rows],
        }


def period_bounds(period: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``YYYY-MM`` or ``YYYY`` in ``tz``, as UTC instants.

    Raises:
        InputError: naming ``period`` when it is neither.
    """
    text = period.strip()
    try:
        if len(text) == 4 and text.isdigit():
            return (
                to_utc(datetime(int(text), 1, 1, tzinfo=tz)),
                to_utc(datetime(int(text) + 1, 1, 1, tzinfo=tz)),
            )
        return month_bounds(text, tz)
    except (InputError, ValueError, OverflowError):
        msg = f"period: {period!r} is not a month (YYYY-MM) or a year (YYYY)"
        raise InputError(msg, field="period") from None


def complaint_report(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    as_of: datetime | None = None,
    masked: bool = True,
) -> ComplaintReport:
    """The complaints received in ``[start, end)`` with their times, counts and medians.

    Phone numbers and e-mail addresses inside free text (titles, why, root
    cause, rectification, the follow-up's comment) are masked unless
    ``masked`` is False. ``as_of`` (default: the latest change read) is
    when open complaints are judged past their deadline.
    """
    text = mask_pii_text if masked else (lambda value: value)
    found = session.execute(
        select(Complaint, Incident)
        .join(Incident, Incident.id == Complaint.incident_id)
        .where(Complaint.received_at >= start, Complaint.received_at < end)
        .order_by(Complaint.received_at, Complaint.id)
    ).all()
    now = as_of or max([c.updated_at for c, _ in found], default=end)
    rows = tuple(
        ComplaintRow(
            key=c.key,
            incident_key=inc.key,
            title=text(inc.title) or "",
            source=inc.source,
            customer=inc.customer,
            service=inc.service,
            origin=c.origin,
            detail=text(c.detail) or "",
            state=c.state,
            ticket_ref=c.ticket_ref,
            ticket_url=c.ticket_url,
            ticket_status=c.ticket_status,
            received_at=c.received_at,
            deadline=c.deadline,
            acknowledged_at=c.acknowledged_at,
            root_cause_at=c.root_cause_at,
            rectified_at=c.rectified_at,
            closed_at=c.closed_at,
            follow_up_reached_at=c.follow_up_reached_at,
            escalated_at=c.escalated_at,
            root_cause=text(c.root_cause),
            rectification=text(c.rectification),
            follow_up={
                k: text(v) if k == "comment" else v for k, v in (c.follow_up_outcome or {}).items()
            },
        )
        for c, inc in found
    )
    counts: Counter[str] = Counter(total=len(rows))
    for r in rows:
        counts[f"state.{r.state}"] += 1
        counts[f"origin.{r.origin}"] += 1
        counts["escalated"] += r.escalated_at is not None
        counts["open_past_deadline"] += r.closed_at is None and r.deadline < now
    for state in ComplaintState:
        counts.setdefault(f"state.{state.value}", 0)
    medians: dict[str, int | None] = {}
    for milestone in MILESTONES:
        values = [s for r in rows if (s := r.seconds_to(milestone)) is not None]
        medians[milestone] = int(statistics.median(values)) if values else None
    return ComplaintReport(
        start=start, end=end, as_of=now, rows=rows, counts=dict(counts), medians=medians
    )


# -- documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ComplaintDocument:
    """What a complaint report document shows besides the report: its period and zone."""

    period: str
    timezone: str
    report: ComplaintReport

    @property
    def basename(self) -> str:
        return f"qloop-complaints-{self.period}"


def _tables(labels: Labels, doc: ComplaintDocument) -> list[ReportTable]:
    rep = doc.report
    L = labels
    summary: list[list[Cell]] = [[L("complaints.count.total"), rep.counts["total"]]]
    summary += [
        [L(f"complaints.state.{s.value}"), rep.counts.get(f"state.{s.value}", 0)]
        for s in ComplaintState
    ]
    summary += [
        [L("complaints.count.escalated"), rep.counts.get("escalated", 0)],
        [L("complaints.count.open_past_deadline"), rep.counts.get("open_past_deadline", 0)],
    ]
    summary += [
        [L(f"complaints.origin.{o}"), rep.counts.get(f"origin.{o}", 0)]
        for o in ("nonconformity", "source", "channel")
    ]
    medians: list[list[Cell]] = [
        [L(f"complaints.median.{m}"), Seconds(rep.medians[m])] for m in MILESTONES
    ]
    times: list[list[Cell]] = []
    causes: list[list[Cell]] = []
    for r in rep.rows:
        times.append(
            [
                r.incident_key,
                r.customer,
                L(f"complaints.origin.{r.origin}"),
                L(f"complaints.state.{r.state}"),
                r.ticket_ref,
                L.instant(r.received_at),
                L.instant(r.acknowledged_at),
                L.instant(r.root_cause_at),
                L.instant(r.rectified_at),
                L.instant(r.closed_at),
                L.instant(r.follow_up_reached_at),
                L.instant(r.deadline),
                L.instant(r.escalated_at),
            ]
        )
        causes.append([r.incident_key, r.detail, r.root_cause, r.rectification])
    return [
        ReportTable(
            "summary",
            L("complaints.section.summary"),
            [L("complaints.column.what"), L("complaints.column.count")],
            summary,
        ),
        ReportTable(
            "medians",
            L("complaints.section.medians"),
            [L("complaints.column.from_receipt_to"), L("complaints.column.median")],
            medians,
        ),
        ReportTable(
            "complaints",
            L("complaints.section.list"),
            [
                L(f"complaints.column.{c}")
                for c in (
                    "incident",
                    "customer",
                    "origin",
                    "state",
                    "ticket",
                    "received",
                    "acknowledged",
                    "root_cause_at",
                    "rectified",
                    "closed",
                    "follow_up",
                    "deadline",
                    "escalated",
                )
            ],
            times,
        ),
        ReportTable(
            "causes",
            L("complaints.section.causes"),
            [
                L(f"complaints.column.{c}")
                for c in ("incident", "why", "root_cause", "rectification")
            ],
            causes,
        ),
    ]


def _meta(labels: Labels, doc: ComplaintDocument) -> list[tuple[str, str]]:
    return [
        (labels("period"), doc.period),
        (labels("as_of"), f"{labels.instant(doc.report.as_of)} ({doc.timezone})"),
        (labels("version"), str(Stamps.current().qloop)),
    ]


def render_complaints(doc: ComplaintDocument, fmt: str, lang: str) -> bytes:
    """The complaint report as ``fmt`` (json, html, pdf, xlsx) in ``lang``.

    Raises:
        InputError: Unknown format or language (naming ``format`` or ``lang``).
    """
    check_format(fmt)
    check_lang(lang)
    labels = Labels(lang, doc.timezone)
    if fmt == "json":
        data = {
            "period": doc.period,
            "timezone": doc.timezone,
            "lang": lang,
            **doc.report.to_data(),
        }
        return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()
    title = f"{labels('complaints.title')} {doc.period}"
    tables = _tables(labels, doc)
    meta = _meta(labels, doc)
    if fmt == "html":
        return html.tables_page(labels, title, labels("complaints.subtitle"), meta, tables)
    if fmt == "pdf":
        return pdf.tables_pdf(
            labels, title, labels("complaints.subtitle"), meta, tables, created=doc.report.as_of
        )
    return xlsx.tables_workbook(
        labels, [(labels("complaints.title"), doc.period), *meta], tables, created=doc.report.as_of
    )


def complaint_document(
    session: Session, period: str, timezone: str, *, as_of: datetime
) -> ComplaintDocument:
    """The complaint report of ``period`` (``YYYY-MM`` or ``YYYY``, in ``timezone``) as of
    ``as_of``."""
    start, end = period_bounds(period, ZoneInfo(timezone))
    return ComplaintDocument(
        period=period,
        timezone=timezone,
        report=complaint_report(session, start, end, as_of=as_of),
    )
