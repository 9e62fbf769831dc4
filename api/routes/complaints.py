"""Complaints (R5): the period's complaints as JSON, and the complaint report as a document.

``GET /complaints?period=YYYY-MM`` (or ``YYYY``) answers each complaint
received in the period with its times and state, the counts and the
median durations; ``GET /complaints/report/{period}`` serves the complaint
report as HTML, PDF, XLSX or JSON in ``lang``. Both are read as of now
(the ``X-Qloop-As-Of`` header of the document says the instant), with
phone numbers and e-mail addresses in free text masked, so the ``read``
permission (qa-read included) may fetch them. A document served is
audit-logged like an export (format ``complaints:<format>``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from starlette.responses import Response

from api.routes.common import READ_PROBLEMS, Reader, RuntimeDep, SessionDep, problems
from core.complaints.report import complaint_document, render_complaints
from core.compliance import whole_second
from core.export.month import audit_export
from core.report.build import default_lang
from core.report.model import MEDIA_TYPES

router = APIRouter(tags=["complaints"], responses={**READ_PROBLEMS, **problems(404)})

PERIOD_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})(-(0[1-9]|1[0-2]))?$"
"""A month or a year from 1970 to 2999."""
AS_OF_HEADER = "X-Qloop-As-Of"


class ComplaintList(BaseModel):
    """The complaints received in a period, with counts and median seconds from receipt."""

    period: str
    timezone: str
    start: str
    end: str
    as_of: str
    counts: dict[str, int]
    medians: dict[str, int | None]
    complaints: list[dict[str, Any]]


@router.get("/complaints", response_model=ComplaintList)
def list_complaints(
    rt: RuntimeDep,
    s: SessionDep,
    _: Reader,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="YYYY-MM or YYYY")],
) -> ComplaintList:
    """The complaints received in ``period`` with their times (received, acknowledged, root
    cause, rectified, closed, follow-up reached), states, counts and median durations."""
    doc = complaint_document(s, period, rt.config.timezone, as_of=whole_second(rt.now()))
    return ComplaintList(period=period, timezone=doc.timezone, **doc.report.to_data())


@router.get(
    "/complaints/report/{period}",
    responses={
        200: {
            "description": "The complaint report as an attachment "
            "qloop-complaints-<period>.<format>",
            "content": {
                **{
                    MEDIA_TYPES[f].split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
                    for f in ("html", "pdf", "xlsx")
                },
                MEDIA_TYPES["json"]: {"schema": {"type": "object"}},
            },
        }
    },
)
def complaint_report_document(
    rt: RuntimeDep,
    principal: Reader,
    period: Annotated[str, Path(pattern=PERIOD_PATTERN, description="YYYY-MM or YYYY")],
    fmt: Annotated[
        Literal["html", "pdf", "xlsx", "json"], Query(alias="format", description="Document format")
    ] = "html",
    lang: Annotated[
        Literal["zh-CN", "en"] | None,
        Query(description="Language (default: zh-CN for a CN calendar, else en)"),
    ] = None,
) -> Response:
    """The complaint report of ``period`` as a document (audit-logged)."""
    at = whole_second(rt.now())
    with rt.db.session() as s:
        doc = complaint_document(s, period, rt.config.timezone, as_of=at)
    body = render_complaints(doc, fmt, lang or default_lang(rt, sorted(rt.policies)))
    with rt.db.session() as s:
        audit_export(
            s,
            rt,
            actor=principal.name,
            period=period,
            fmt=f"complaints:{fmt}",
            policies=sorted(rt.policies),
            masked=True,
            via="api",
            as_of=at,
        )
    headers = {
        "Content-Disposition": f'attachment; filename="{doc.basename}.{fmt}"',
        AS_OF_HEADER: at.isoformat(),
    }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
