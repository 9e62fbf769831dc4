"""The audit evidence pack of a period, streamed as a zip (``GET /evidence``).

The bytes come from :func:`core.evidence.build_pack`, the writer ``qloop
evidence`` uses: entries are compressed and sent as they are produced, so
a long period never sits in memory. The manifest's SHA-256 is audit-logged
once the last byte is out (a download cut short is not recorded as done).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from starlette.responses import Response

from api.auth import Permission, Principal, require
from api.routes.common import MONTH_PATTERN, READ_PROBLEMS, RuntimeDep, problems
from core.compliance import whole_second
from core.evidence import build_pack
from core.evidence.pack import audit_pack
from core.runtime import Runtime

router = APIRouter(tags=["evidence"], responses={**READ_PROBLEMS, **problems(400)})
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]
Month = Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM")]


def _audited(
    rt: Runtime,
    chunks: Iterator[bytes],
    manifest: list[bytes],
    *,
    actor: str,
    start: str,
    end: str,
    at: AwareDatetime,
) -> Iterator[bytes]:
    yield from chunks
    sha = hashlib.sha256(manifest[0]).hexdigest()
    audit_pack(rt, actor=actor, start=start, end=end, as_of=at, via="api", sha=sha)


@router.get(
    "/evidence",
    response_class=Response,
    responses={200: {"description": "The pack: a zip", "content": {"application/zip": {}}}},
)
def evidence_pack(
    rt: RuntimeDep,
    principal: Exporter,
    start: Annotated[str, Query(alias="from", pattern=MONTH_PATTERN, description="First month")],
    end: Annotated[str, Query(alias="to", pattern=MONTH_PATTERN, description="Last month")],
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="Evaluate as of this instant (ISO 8601 with a zone); default: now"),
    ] = None,
    lang: Annotated[
        Literal["zh-CN", "en"] | None,
        Query(description="The monthly reports' language; default zh-CN for a CN calendar"),
    ] = None,
) -> Response:
    """The period's audit evidence pack (admin and qa-read; streamed; audit-logged).

    The same zip as ``qloop evidence --from --to --as-of``: each month's
    export and quality report (HTML, PDF), the nonconformities with their
    tickets and history, the review decisions, the policies and masked
    configuration in force, the versions, and ``manifest.json`` (SHA-256 of
    every file). The same stored facts and ``as_of`` give the same bytes;
    ``qloop evidence verify`` checks a downloaded pack.
    """
    at = whole_second(as_of if as_of is not None else rt.now())
    manifest: list[bytes] = []
    chunks = build_pack(rt, start, end, at, manifest, lang=lang)  # bad period: 422 here
    first = next(chunks)  # the first entry is built: its errors answer before streaming
    body = _audited(
        rt,
        itertools.chain([first], chunks),
        manifest,
        actor=principal.name,
        start=start,
        end=end,
        at=at,
    )
    name = f"qloop-evidence-{start}..{end}.zip"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Qloop-As-Of": at.isoformat(),
    }
    return StreamingResponse(body, media_type="application/zip", headers=headers)
