"""The review's campaign and complaint sections, with the documents the pack carries.

- Campaigns: every stored campaign whose window overlaps the year, with its
  results as stored (``campaign_results``: the campaign's own ``as_of`` is the
  latest fact it holds; comments masked), and its results report.
- Complaints: the year's complaint report as of the pack's ``as_of``
  (counts, median times, each complaint masked), and the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.campaign.results import CampaignResults, campaign_results
from core.complaints.report import ComplaintDocument, complaint_document, render_complaints
from core.report.campaign import render_results
from core.store.models import Campaign


def year_campaigns(s: Session, year: int) -> list[CampaignResults]:
    """The results of the stored campaigns whose window overlaps ``year``, by name."""
    first, last = f"{year:04d}-01-01", f"{year:04d}-12-31"
    names = s.scalars(
        select(Campaign.name)
        .where(Campaign.window_from <= last, Campaign.window_to >= first)
        .order_by(Campaign.name)
    )
    return [campaign_results(s, name, masked=True) for name in list(names)]


def campaign_summary(res: CampaignResults) -> dict[str, Any]:
    """What the review shows of a campaign: response and each item's overall estimate."""
    return {
        "name": res.name,
        "state": res.state,
        "window": [res.window_from, res.window_to],
        "as_of": res.as_of,
        "method": res.method,
        "invited": res.invited,
        "answered": res.answered,
        "response_rate": res.answered / res.invited if res.invited else None,
        "strata_below_target": sum(st.below_target for st in res.strata),
        "items": [
            {
                "item": item.item,
                "kind": item.kind,
                "n": item.overall.n,
                "value": item.overall.value,
                "low": item.overall.low,
                "high": item.overall.high,
                "change": item.change,
            }
            for item in res.items
        ],
    }


def year_complaints(s: Session, year: int, timezone: str, as_of: datetime) -> ComplaintDocument:
    """The year's complaint report as of ``as_of`` (personal data masked)."""
    return complaint_document(s, f"{year:04d}", timezone, as_of=as_of)


def complaint_summary(doc: ComplaintDocument) -> dict[str, Any]:
    """Counts and median times of the year's complaints."""
    data = doc.report.to_data()
    return {"counts": data["counts"], "medians": data["medians"]}


def documents(
    campaigns: list[CampaignResults],
    complaints: ComplaintDocument,
    lang: str,
    timezone: str,
) -> Iterator[tuple[str, bytes]]:
    """(entry name, bytes) of the campaigns' results reports and the complaint report."""
    for res in campaigns:
        for fmt in ("html", "xlsx"):
            yield (
                f"campaigns/qloop-campaign-{res.name}-{lang}.{fmt}",
                render_results(res, fmt, lang, timezone),
            )
    for fmt in ("html", "xlsx"):
        yield (
            f"complaints/{complaints.basename}-{lang}.{fmt}",
            render_complaints(complaints, fmt, lang),
        )
