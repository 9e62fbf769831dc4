"""The yearly management review pack (SPEC R8, §12): KPI completion, closure, audit findings."""

from __future__ import annotations

from core.review.build import build_review, year_months
from core.review.findings import Finding, load_findings
from core.review.pack import review_chunks, write_review_pack

__all__ = [
    "Finding",
    "build_review",
    "load_findings",
    "review_chunks",
    "write_review_pack",
    "year_months",
]
