"""Compliance exports for QA: one row per incident of a month, plus the month's indicators."""

from core.export.rows import COLUMNS, export_rows, period_indicators
from core.export.writers import write_export

__all__ = ["COLUMNS", "export_rows", "period_indicators", "write_export"]
