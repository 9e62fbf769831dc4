"""Compliance exports of a month (streamed) and the month's indicators.

CSV and JSON lines are written row by row as the database yields them
(``export_rows`` is a generator over a ``yield_per`` query), in chunks of
about :data:`CHUNK_BYTES`, so a month is never held in memory. XLSX cannot
be written as a stream (the file is a zip), so it is written with
xlsxwriter's ``constant_memory`` mode into a temporary file, which is then
sent in chunks and deleted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import xlsxwriter
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.responses import Response

from api.auth import Permission, Principal, require
from api.problems import ApiError
from api.routes.common import (
    MONTH_PATTERN,
    READ_PROBLEMS,
    Reader,
    RuntimeDep,
    SessionDep,
    problems,
)
from core.export import COLUMNS, export_rows, period_indicators
from core.export.writers import flatten_indicators
from core.runtime import Runtime

router = APIRouter(tags=["exports"], responses={**READ_PROBLEMS, **problems(404)})

CHUNK_BYTES = 64 * 1024
"""Size a streamed body is sent in (about)."""
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Period = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM")]
PolicyName = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", description="Default: every policy"),
]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]


def _targets(rt: Runtime, policy: str | None) -> list[tuple[str, str]]:
    if policy is not None and policy not in rt.policies:
        known = ", ".join(sorted(rt.policies))
        raise ApiError(404, f"unknown policy {policy!r}; known: {known}")
    names = [policy] if policy else sorted(rt.policies)
    return [(n, rt.policies[n].version) for n in names]


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else value


def _rows(
    rt: Runtime, period: str, targets: list[tuple[str, str]], unmask: bool
) -> Iterator[dict[str, Any]]:
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.sessions() as s:
        for name, version in targets:
            yield from export_rows(
                s, policy=name, version=version, month=period, tz=tz, unmask=unmask
            )


def csv_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """CSV that Excel opens correctly (UTF-8 with BOM), in chunks of about CHUNK_BYTES."""
    buf = io.StringIO()
    writer = csv.writer(buf, dialect="excel")
    buf.write("\ufeff")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
        if buf.tell() >= CHUNK_BYTES:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def jsonl_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line, in chunks of about CHUNK_BYTES."""
    parts: list[str] = []
    size = 0
    for row in rows:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        parts.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(parts).encode("utf-8")
            parts, size = [], 0
    if parts:
        yield "".join(parts).encode("utf-8")


def write_xlsx(
    path: str, rows: Iterator[dict[str, Any]], indicators: list[tuple[str, Any]]
) -> None:
    """The export as XLSX at ``path``, in constant memory (rows are written as they come)."""
    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    try:
        bold = book.add_format({"bold": True})
        sheet = book.add_worksheet("incidents")
        sheet.write_row(0, 0, COLUMNS, bold)
        sheet.freeze_panes(1, 0)
        for r, row in enumerate(rows, start=1):
            sheet.write_row(r, 0, [_cell(row[c]) for c in COLUMNS])
        ind = book.add_worksheet("indicators")
        ind.write_row(0, 0, ("indicator", "value"), bold)
        for r, (key, value) in enumerate(indicators, start=1):
            ind.write_row(r, 0, (key, _cell(value)))
        ind.set_column(0, 0, 48)
    finally:
        book.close()


def _indicators(rt: Runtime, period: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    with rt.db.sessions() as s:
        return {
            name: period_indicators(
                s,
                policy=name,
                version=version,
                month=period,
                now=rt.now(),
                rules=rt.policies[name],
            ).as_dict()
            for name, version in targets
        }


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@router.get(
    "/exports/{period}",
    response_class=Response,
    responses={
        200: {
            "description": "The month's rows: CSV, XLSX or JSON lines",
            "content": {t.split(";")[0]: {} for t in MEDIA_TYPES.values()},
        }
    },
)
def export_period(
    period: Period,
    rt: RuntimeDep,
    principal: Exporter,
    fmt: Annotated[Literal["csv", "xlsx", "jsonl"], Query(alias="format")] = "csv",
    policy: PolicyName = None,
) -> Response:
    """One row per incident of the month with every fact and verdict (streamed)."""
    targets = _targets(rt, policy)
    unmask = principal.sees_contacts
    filename = f"qloop-{period}{'-' + policy if policy else ''}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    rows = _rows(rt, period, targets, unmask)
    if fmt == "csv":
        return StreamingResponse(csv_chunks(rows), media_type=MEDIA_TYPES[fmt], headers=headers)
    if fmt == "jsonl":
        return StreamingResponse(jsonl_chunks(rows), media_type=MEDIA_TYPES[fmt], headers=headers)
    flat: list[tuple[str, Any]] = []
    for name, data in _indicators(rt, period, targets).items():
        prefix = f"{name}." if len(targets) > 1 else ""
        flat += list(flatten_indicators(data, prefix))
    fd, path = tempfile.mkstemp(prefix="qloop-export-", suffix=".xlsx")
    os.close(fd)
    try:
        write_xlsx(path, rows, flat)
    except BaseException:
        _unlink(path)
        raise
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[fmt],
        filename=filename,
        background=BackgroundTask(_unlink, path),
    )


class PolicyReport(BaseModel):
    policy: str
    version: str
    indicators: dict[str, Any]


class MonthlyReport(BaseModel):
    period: str
    timezone: str
    policies: list[PolicyReport]


@router.get("/reports/{period}", response_model=MonthlyReport)
def monthly_report(
    period: Period, rt: RuntimeDep, s: SessionDep, _: Reader, policy: PolicyName = None
) -> MonthlyReport:
    """The month's indicators (R4) per policy: coverage, on time, CSAT, SLA compliance, NCs."""
    targets = _targets(rt, policy)
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
