"""The month's quality report: the indicators as JSON, or the report document (issue 11).

``GET /reports/{period}`` without ``format`` answers the indicators per
policy (the first version of this route, unchanged). With ``format`` it
serves the monthly quality report of :mod:`core.report` (HTML, PDF, XLSX or
its JSON document) as a download, evaluated from the stored facts as of
``as_of`` (default: now, to the second; the instant used is in the
``X-Qloop-As-Of`` header). The report holds no contact detail or ticket
title, so the ``read`` permission (qa-read included) may fetch it. Every
document served is audit-logged like an export (format ``report:<format>``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict
from starlette.responses import Response

from api.problems import ApiError
from api.routes.common import READ_PROBLEMS, Reader, RuntimeDep, SessionDep, problems
from api.routes.exports import AsOf, Period, PolicyName, _targets
from core.compliance import whole_second
from core.export import period_indicators
from core.export.as_of import month_indicators_as_of
from core.export.month import audit_export
from core.report import build_report, render_report
from core.report.model import MEDIA_TYPES
from core.runtime import Runtime

router = APIRouter(tags=["reports"], responses={**READ_PROBLEMS, **problems(404)})

ReportFormat = Annotated[
    Literal["html", "pdf", "xlsx", "json"] | None,
    Query(
        alias="format",
        description="Serve the report document in this format; "
        "omit for the indicators as JSON (the answer described by the schema)",
    ),
]
ReportLang = Annotated[
    Literal["zh-CN", "en"] | None,
    Query(
        description="Language of the document (only with format); default: zh-CN for a CN "
        "calendar, else en"
    ),
]
AS_OF_HEADER = "X-Qloop-As-Of"


class PolicyReport(BaseModel):
    policy: str
    version: str
    indicators: dict[str, Any]


class MonthlyReport(BaseModel):
    """Without format: the month's indicators per policy."""

    period: str
    timezone: str
    policies: list[PolicyReport]


class ReportDocument(BaseModel):
    """With format=json: the monthly quality report's data (core.report, report_version 2)."""

    model_config = ConfigDict(extra="allow")

    report_version: int
    period: str
    as_of: AwareDatetime
    timezone: str
    scope: str
    lang: str
    policies: list[dict[str, Any]]
    all: dict[str, Any] | None


def _documents() -> dict[int | str, dict[str, Any]]:
    content: dict[str, Any] = {
        MEDIA_TYPES[f].split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
        for f in ("html", "pdf", "xlsx")
    }
    return {
        200: {
            "description": "Without format: the indicators per policy (JSON). With format: "
            "the report document (HTML, PDF, XLSX, or the report's JSON document) as an "
            "attachment named qloop-report-<period>-<policy or all>.<format>",
            "content": content,
            "headers": {
                AS_OF_HEADER: {
                    "description": "With format: the instant the report was evaluated at",
                    "schema": {"type": "string", "format": "date-time"},
                }
            },
        }
    }


@router.get(
    "/reports/{period}", response_model=MonthlyReport | ReportDocument, responses=_documents()
)
def monthly_report(
    period: Period,
    rt: RuntimeDep,
    s: SessionDep,
    principal: Reader,
    fmt: ReportFormat = None,
    lang: ReportLang = None,
    policy: PolicyName = None,
    as_of: AsOf = None,
) -> MonthlyReport | Response:
    """The month's indicators (R4) per policy, or the monthly quality report as a document.

    Without ``format``: coverage, on time, CSAT, SLA compliance, NCs per
    policy; with ``as_of``, recomputed from the stored facts seen at that
    instant. With ``format`` (html, pdf, xlsx, json): the monthly quality
    report in ``lang`` as of ``as_of`` (default: now); the same facts and
    ``as_of`` give the same bytes. Audit-logged.
    """
    targets = _targets(rt, policy)
    if fmt is not None:
        return _document(rt, principal.name, period, fmt, lang, policy, as_of)
    if lang is not None:
        raise ApiError(422, "lang: a language applies to a report document; give format too")
    if as_of is not None:
        at = whole_second(as_of)
        reports = [
            PolicyReport(
                policy=name,
                version=version,
                indicators=month_indicators_as_of(rt, s, name, period, at).as_dict(),
            )
            for name, version in targets
        ]
        return MonthlyReport(period=period, timezone=rt.config.timezone, policies=reports)
    reports = [
        PolicyReport(
            policy=name,
            version=version,
            indicators=period_indicators(
                s,
                policy=name,
                version=version,
                month=period,
                now=rt.now(),
                rules=rt.policies[name],
            ).as_dict(),
        )
        for name, version in targets
    ]
    return MonthlyReport(period=period, timezone=rt.config.timezone, policies=reports)


def _document(
    rt: Runtime,
    actor: str,
    period: str,
    fmt: str,
    lang: str | None,
    policy: str | None,
    as_of: AwareDatetime | None,
) -> Response:
    """The report document, rendered whole (a report is small) and audit-logged once built."""
    at = whole_second(as_of if as_of is not None else rt.now())
    report = build_report(rt, period, as_of=at, policy=policy)
    body = render_report(report, fmt, lang)
    with rt.db.session() as s:
        audit_export(
            s,
            rt,
            actor=actor,
            period=period,
            fmt=f"report:{fmt}",
            policies=[p["policy"] for p in report.data["policies"]],
            masked=True,
            via="api",
            as_of=at,
        )
    headers = {
        "Content-Disposition": f'attachment; filename="{report.basename}.{fmt}"',
        AS_OF_HEADER: at.isoformat(),
    }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
