"""Compliance exports of a month (streamed) and the month's indicators.

The writer is :mod:`core.export.writers`, the one ``qloop export`` uses.
CSV and JSON lines are written row by row as the database yields them
(``export_rows`` is a generator over a ``yield_per`` query), in chunks of
about :data:`CHUNK_BYTES`, so a month is never held in memory. XLSX cannot
be written as a stream (the file is a zip): the writer fills an anonymous
temporary file in constant memory, which is then sent in chunks. Text from
the ITSM tool never becomes a formula. Every export is audit-logged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from starlette.responses import Response

from api.auth import Permission, Principal, require
from api.problems import ApiError
from api.routes.common import (
    MONTH_PATTERN,
    READ_PROBLEMS,
    RuntimeDep,
    problems,
)
from core.compliance import whole_second
from core.export import COLUMNS, Table, export_rows, indicators_table, period_indicators
from core.export.month import audit_export
from core.export.nc_sheet import nc_rows, nc_table
from core.export.spill import spill_month
from core.export.writers import CHUNK_BYTES, csv_chunks, jsonl_chunks, xlsx_chunks
from core.runtime import Runtime

router = APIRouter(tags=["exports"], responses={**READ_PROBLEMS, **problems(404)})

__all__ = ["CHUNK_BYTES", "MEDIA_TYPES", "export_response", "router"]
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
AsOf = Annotated[
    AwareDatetime | None,
    Query(
        description="Recompute the month as of this instant (ISO 8601 with a zone); "
        "default: the stored verdicts",
    ),
]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]


def _targets(rt: Runtime, policy: str | None) -> list[tuple[str, str]]:
    if policy is not None and policy not in rt.policies:
        known = ", ".join(sorted(rt.policies))
        raise ApiError(404, f"unknown policy {policy!r}; known: {known}")
    names = [policy] if policy else sorted(rt.policies)
    return [(n, rt.policies[n].version) for n in names]


def _rows(
    rt: Runtime, period: str, targets: list[tuple[str, str]], unmask: bool
) -> Iterator[dict[str, Any]]:
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.sessions() as s:
        for name, version in targets:
            yield from export_rows(
                s, policy=name, version=version, month=period, tz=tz, unmask=unmask
            )


def _indicators(rt: Runtime, period: str, targets: list[tuple[str, str]]) -> Table:
    """One indicators sheet: ``<policy>.<indicator>`` rows when there are several policies."""
    with rt.db.sessions() as s:
        data = {
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
    return _indicators_of(data)


def _indicators_of(data: dict[str, dict[str, Any]]) -> Table:
    if len(data) == 1:
        (only,) = data.values()
        return indicators_table(only)
    return indicators_table(data)


def _ncs(rt: Runtime, period: str, targets: list[tuple[str, str]], unmask: bool) -> Table:
    tz = ZoneInfo(rt.config.timezone)

    def rows() -> Iterator[dict[str, Any]]:
        with rt.db.sessions() as s:
            for name, version in targets:
                yield from nc_rows(
                    s, policy=name, version=version, month=period, tz=tz, unmask=unmask
                )

    return nc_table(rows())


def _tables_as_of(
    rt: Runtime, period: str, targets: list[tuple[str, str]], unmask: bool, as_of: datetime
) -> list[Table]:
    """The month recomputed from the stored facts as of ``as_of`` (spilled; nothing written)."""
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.sessions() as s:
        months = [
            spill_month(rt, s, name, period, as_of, tz=tz, unmask=unmask) for name, _ in targets
        ]
    return [
        Table(
            "incidents",
            COLUMNS,
            itertools.chain.from_iterable(m.incident_rows() for m in months),
        ),
        _indicators_of({m.policy: m.indicators.as_dict() for m in months}),
        nc_table(itertools.chain.from_iterable(m.nc_rows() for m in months)),
    ]


def _body(fmt: str, tables: list[Table], created: datetime | None) -> Iterator[bytes]:
    if fmt == "csv":
        return csv_chunks(tables[0])
    if fmt == "jsonl":
        return jsonl_chunks(tables[0])
    chunks = xlsx_chunks(tables, created=created)
    first = next(chunks)  # the workbook is complete: errors answer 500 before streaming
    return itertools.chain([first], chunks)


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
    as_of: AsOf = None,
) -> Response:
    """One row per incident of the month with every fact and verdict (streamed; audit-logged).

    Text cells of CSV and XLSX never become formulas; JSON lines carry the
    raw text. Contact details are masked unless the caller may see them.
    XLSX adds the indicators and the nonconformities sheets. With
    ``as_of``, the month is recomputed from the stored facts seen at that
    instant: the same facts give the same bytes whenever it is asked.
    """
    return export_response(rt, principal, period, fmt, policy=policy, as_of=as_of, via="api")


def export_response(
    rt: Runtime,
    principal: Principal,
    period: str,
    fmt: str,
    *,
    policy: str | None,
    as_of: datetime | None,
    via: str,
) -> StreamingResponse:
    """The streamed export of ``period`` for ``principal``, audit-logged as coming ``via``.

    The API's route and the QA web page's download both answer with this.

    Raises:
        ApiError: 404 for an unknown policy.
    """
    targets = _targets(rt, policy)
    at = whole_second(as_of) if as_of is not None else None
    unmask = principal.sees_contacts
    filename = f"qloop-{period}{'-' + policy if policy else ''}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if at is not None:
        tables = _tables_as_of(rt, period, targets, unmask, at)
    else:
        tables = [Table("incidents", COLUMNS, _rows(rt, period, targets, unmask))]
        if fmt == "xlsx":
            tables += [_indicators(rt, period, targets), _ncs(rt, period, targets, unmask)]
    body = _body(fmt, tables, at)
    with rt.db.session() as s:
        audit_export(
            s,
            rt,
            actor=principal.name,
            period=period,
            fmt=fmt,
            policies=[name for name, _ in targets],
            masked=not unmask,
            via=via,
            as_of=at,
        )
    return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)
