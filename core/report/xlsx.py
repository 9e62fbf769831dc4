"""The report's tables as a workbook (one sheet per table and section), via the export writer.

Cells: counts and rates as numbers (a rate as a fraction), durations in
seconds, text as text (never a formula). The workbook's creation date is
``as_of``, so the same report gives the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.export.writers import Table, xlsx_chunks
from core.report.catalogue import Labels
from core.report.model import Report
from core.report.tables import Rate, ReportTable, Seconds, display, section_tables, sections


def raw_cell(labels: Labels, cell: Any) -> Any:
    """A cell as XLSX keeps it: numbers as numbers, other cells as the reader sees them."""
    if isinstance(cell, Rate | Seconds):
        return cell.value
    if isinstance(cell, bool):
        return display(labels, cell)
    return cell


def to_xlsx(report: Report, lang: str) -> bytes:
    """The workbook in ``lang`` (sheet names ``<n>-<table>``, the first sheet the contents)."""
    labels = Labels(lang, report.timezone)
    data = report.data
    about = [
        (labels("title"), data["period"]),
        (labels("period"), data["period"]),
        (labels("as_of"), labels.instant(data["as_of"])),
        (labels("timezone"), data["timezone"]),
        (labels("version"), data["qloop_version"]),
        (labels("holidays_version"), data["holidays_version"]),
    ]
    cols = (labels("column.indicator"), labels("column.value"))
    tables = [Table("about", cols, [dict(zip(cols, kv, strict=True)) for kv in about])]
    for n, section in enumerate(sections(data), start=1):
        name = labels("policy_all") if section["policy"] == "all" else section["policy"]
        for t in section_tables(labels, section):
            heads = tuple(t.columns)
            rows = [
                dict(zip(heads, [raw_cell(labels, c) for c in row], strict=True)) for row in t.rows
            ]
            note = {col: "" for col in heads} | {
                heads[0]: f"{t.title} — {labels('policy')}: {name} — {labels('as_of')}: "
                f"{labels.instant(data['as_of'])} — {labels('version')}: {data['qloop_version']}"
            }
            tables.append(Table(f"{n}-{t.key}", heads, [*rows, note]))
    return b"".join(xlsx_chunks(tables, created=report.as_of))


def tables_workbook(
    labels: Labels, about: list[tuple[str, str]], tables: list[ReportTable], *, created: datetime
) -> bytes:
    """A workbook of plain tables: an ``about`` sheet, then one sheet per table."""
    cols = (labels("column.indicator"), labels("column.value"))
    sheets = [Table("about", cols, [dict(zip(cols, kv, strict=True)) for kv in about])]
    for n, t in enumerate(tables, start=1):
        heads = tuple(t.columns)
        rows = [dict(zip(heads, [raw_cell(labels, c) for c in row], strict=True)) for row in t.rows]
        sheets.append(Table(f"{n}-{t.key}", heads, rows))
    return b"".join(xlsx_chunks(sheets, created=created))
