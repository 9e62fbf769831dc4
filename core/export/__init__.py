"""Compliance exports for QA: one row per incident of a month, plus the month's indicators.

``rows`` reads them from the store, ``writers`` turns tables into CSV, XLSX
or JSON lines (text never becomes a formula), ``files`` puts them on disk
whole or not at all, ``month`` does all of it for ``qloop export``.
"""

from core.export.rows import COLUMNS, export_rows, period_indicators
from core.export.writers import FORMATS, Table, files_of, indicators_table

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Table",
    "export_rows",
    "files_of",
    "indicators_table",
    "period_indicators",
]
