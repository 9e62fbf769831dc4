"""The management review's data for a year, from stored facts as of an instant (writes nothing).

Sections: ``kpi`` (per policy: every month's KPIs against the policy's
targets, and the year), ``nonconformities`` (closure statistics per month,
per severity and for the year), ``campaigns`` (the survey campaigns whose
window overlaps the year, results as stored), ``complaints`` (the year's
complaint report as of ``as_of``: counts and median times),
``audit_findings`` (the auditors' file, with the rectification state as of
``as_of``'s day). The months are the year's in the configured zone, up to
``as_of``'s month.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.campaign.results import CampaignResults
from core.complaints.report import ComplaintDocument
from core.compliance import whole_second
from core.errors import InputError
from core.report.build import default_lang
from core.review.closure import closure_section
from core.review.findings import Finding, findings_section
from core.review.kpi import kpi_section
from core.review.sections import (
    campaign_summary,
    complaint_summary,
    year_campaigns,
    year_complaints,
)
from core.runtime import Runtime
from core.stamps import Stamps

REVIEW_VERSION = 1


@dataclass(frozen=True)
class Documents:
    """The campaigns' results and the year's complaint report the pack also carries."""

    campaigns: list[CampaignResults]
    complaints: ComplaintDocument


FIRST_YEAR, LAST_YEAR = 1970, 9998


def year_months(year: int, as_of: datetime, timezone: str) -> list[str]:
    """The months of ``year`` up to ``as_of``'s month (in ``timezone``).

    Raises:
        InputError: The year is out of range or has not begun at ``as_of``.
    """
    if not FIRST_YEAR <= year <= LAST_YEAR:
        msg = f"--year {year} is out of range; give a year from {FIRST_YEAR} to {LAST_YEAR}"
        raise InputError(msg, field="--year")
    local = as_of.astimezone(ZoneInfo(timezone))
    if year > local.year:
        msg = f"--year {year} has not begun at {local.date().isoformat()} (as of)"
        raise InputError(msg, field="--year")
    last = 12 if year < local.year else local.month
    return [f"{year:04d}-{m:02d}" for m in range(1, last + 1)]


def build_review(
    rt: Runtime,
    year: int,
    *,
    as_of: datetime,
    findings: Sequence[Finding] = (),
    findings_file: str | None = None,
) -> dict[str, Any]:
    """The review's data (JSON-able); the same stored facts and ``as_of`` give the same data.

    Raises:
        InputError: A bad year or a naive ``as_of``.
    """
    return review_and_documents(
        rt, year, as_of=as_of, findings=findings, findings_file=findings_file
    )[0]


def review_and_documents(
    rt: Runtime,
    year: int,
    *,
    as_of: datetime,
    findings: Sequence[Finding] = (),
    findings_file: str | None = None,
) -> tuple[dict[str, Any], Documents]:
    """The review's data and the campaigns' and complaints' documents behind it."""
    if as_of.tzinfo is None:
        msg = "as_of: give an instant with a zone"
        raise InputError(msg, field="as_of")
    at = whole_second(as_of)
    months = year_months(year, at, rt.config.timezone)
    names = sorted(rt.policies)
    stamps = Stamps.current()
    today = at.astimezone(ZoneInfo(rt.config.timezone)).date()
    with rt.db.session() as s:
        kpis = [kpi_section(rt, s, name, months, at) for name in names]
        closure = closure_section(s, months, rt.config.timezone, at)
        campaigns = year_campaigns(s, year)
        complaints = year_complaints(s, year, rt.config.timezone, at)
    data = {
        "review_version": REVIEW_VERSION,
        "year": year,
        "months": months,
        "as_of": at.isoformat(),
        "timezone": rt.config.timezone,
        "default_lang": default_lang(rt, names),
        "qloop_version": stamps.qloop,
        "holidays_version": stamps.holidays,
        "policies": names,
        "kpi": kpis,
        "nonconformities": closure,
        "campaigns": [campaign_summary(c) for c in campaigns],
        "complaints": complaint_summary(complaints),
        "audit_findings": {
            "file": findings_file,
            **findings_section(list(findings), today),
        },
    }
    return data, Documents(campaigns, complaints)
