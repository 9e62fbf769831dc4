"""The QA web page's documents: the monthly report's charts and files, evidence packs.

The same functions as ``qloop report`` and ``qloop evidence``
(:mod:`core.report`, :mod:`core.evidence`), audited like them with
``via: web`` and the signed-in token's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from fastapi.responses import Response, StreamingResponse

from api.auth import Principal
from core.compliance import whole_second
from core.evidence.pack import audit_pack, build_pack, pack_months
from core.export.month import audit_export
from core.report import build_report, render_report
from core.report.catalogue import Labels
from core.report.charts import section_charts
from core.report.model import MEDIA_TYPES
from core.report.tables import sections
from core.runtime import Runtime

ZIP = "application/zip"


def trend_charts(rt: Runtime, period: str, lang: str) -> list[tuple[str, list[str]]]:
    """Each report section's name (a policy, or ``all``) and its SVG trend charts.

    The month is evaluated as of now (to the second), as ``qloop report`` does.
    """
    report = build_report(rt, period, as_of=whole_second(rt.now()))
    labels = Labels(lang, report.timezone)
    return [
        (str(section["policy"]), section_charts(labels, report.data, section))
        for section in sections(report.data)
    ]


def report_file(rt: Runtime, principal: Principal, period: str, fmt: str, lang: str) -> Response:
    """The month's report as of now in ``fmt`` and ``lang``, audited as an export."""
    report = build_report(rt, period, as_of=whole_second(rt.now()))
    body = render_report(report, fmt, lang)
    with rt.db.session() as s:
        audit_export(
            s,
            rt,
            actor=principal.name,
            period=period,
            fmt=f"report:{fmt}",
            policies=[p["policy"] for p in report.data["policies"]],
            masked=True,
            via="web",
            as_of=report.as_of,
        )
    name = f"{report.basename}.{fmt}"
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def evidence_file(rt: Runtime, principal: Principal, start: str, end: str) -> StreamingResponse:
    """The evidence pack of ``start``..``end`` as of now, streamed; audited once complete.

    Raises:
        InputError: a month is malformed or ``end`` is before ``start``.
    """
    pack_months(start, end)
    as_of = whole_second(rt.now())
    manifest: list[bytes] = []
    chunks = build_pack(rt, start, end, as_of, manifest)

    def body() -> Iterator[bytes]:
        yield from chunks
        sha = hashlib.sha256(manifest[0]).hexdigest()
        audit_pack(rt, actor=principal.name, start=start, end=end, as_of=as_of, via="web", sha=sha)

    name = f"qloop-evidence-{start}-{end}.zip"
    return StreamingResponse(
        body(), media_type=ZIP, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
