"""The review's tables (KPI completion, nonconformity closure, audit findings), for CSV and XLSX.

Column names are stable identifiers (machines read the CSV files); the
HTML page shows them with the catalogue's labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.export.writers import Table
from core.review.closure import COLUMNS

KPI_COLUMNS = (
    "policy",
    "month",
    "kpi",
    "numerator",
    "denominator",
    "rate",
    "target",
    "met",
)
CLOSURE_COLUMNS = ("month", *COLUMNS, "closed_on_time_rate", "median_close_s")
FINDING_COLUMNS = (
    "id",
    "audit",
    "audited_on",
    "clause",
    "finding",
    "severity",
    "owner",
    "due",
    "state",
    "closed_on",
    "overdue",
    "rectification",
)


def _kpi_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for section in data["kpi"]:
        for row in section["months"]:
            for name, cell in row["kpis"].items():
                yield {"policy": section["policy"], "month": row["month"], "kpi": name, **cell}
        for name, cell in section["year"].items():
            yield {"policy": section["policy"], "month": str(data["year"]), "kpi": name, **cell}


def _closure_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    closure = data["nonconformities"]
    yield from closure["months"]
    yield {"month": str(data["year"]), **closure["total"]}


def review_tables(data: dict[str, Any]) -> list[Table]:
    """The three tables of the review, rows produced lazily from ``data``."""
    return [
        Table("kpi", KPI_COLUMNS, list(_kpi_rows(data))),
        Table("nonconformity-closure", CLOSURE_COLUMNS, list(_closure_rows(data))),
        Table("audit-findings", FINDING_COLUMNS, data["audit_findings"]["findings"]),
    ]
