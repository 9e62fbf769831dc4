"""Writers for the export formats: CSV (Excel-safe UTF-8), XLSX, JSON lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import xlsxwriter

from core.errors import InputError

FORMATS = ("csv", "xlsx", "jsonl")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else value


def flatten_indicators(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"response": {"numerator": 3, ...}}`` → ("response.numerator", 3), …"""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten_indicators(value, f"{name}.")
        else:
            yield name, value


def _csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    # utf-8-sig: Excel reads the BOM and shows Chinese text correctly
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, dialect="excel")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
            count += 1
    return count


def write_export(
    out_dir: Path,
    basename: str,
    fmt: str,
    columns: tuple[str, ...],
    rows: Iterable[dict[str, Any]],
    indicators: dict[str, Any],
) -> list[Path]:
    """Write the rows and the indicators; returns the files written."""
    if fmt not in FORMATS:
        msg = f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}"
        raise InputError(msg)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = list(flatten_indicators(indicators))
    if fmt == "csv":
        main, side = out_dir / f"{basename}.csv", out_dir / f"{basename}-indicators.csv"
        _csv(main, columns, rows)
        _csv(side, ("indicator", "value"), ({"indicator": k, "value": v} for k, v in flat))
        return [main, side]
    if fmt == "jsonl":
        main, side = out_dir / f"{basename}.jsonl", out_dir / f"{basename}-indicators.json"
        with main.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        side.write_text(
            json.dumps(indicators, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return [main, side]
    path = out_dir / f"{basename}.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    bold = book.add_format({"bold": True})
    sheet = book.add_worksheet("incidents")
    sheet.write_row(0, 0, columns, bold)
    sheet.freeze_panes(1, 0)
    for r, row in enumerate(rows, start=1):
        sheet.write_row(r, 0, [_cell(row[c]) for c in columns])
    ind = book.add_worksheet("indicators")
    ind.write_row(0, 0, ("indicator", "value"), bold)
    for r, (key, value) in enumerate(flat, start=1):
        ind.write_row(r, 0, (key, _cell(value)))
    ind.set_column(0, 0, 48)
    book.close()
    return [path]
