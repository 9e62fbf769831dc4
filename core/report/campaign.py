"""A survey campaign's results report as JSON, HTML, XLSX or PDF, in zh-CN or en.

The documents are built from :class:`core.campaign.results.CampaignResults`
with the monthly report's own table renderers, CSS, PDF font and workbook
writer; labels come from ``locale/campaign.<lang>.yaml``. The bytes depend
only on the results (stored facts), the format, the language and the zone:
the PDF's and workbook's creation date is the results' ``as_of``.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from fpdf.enums import XPos, YPos

from core.export.writers import Table, xlsx_chunks
from core.report.catalogue import Labels
from core.report.html import CSS
from core.report.html import table_html as html_table
from core.report.model import check_format, check_lang
from core.report.pdf import FONT, ReportPdf, font_path
from core.report.pdf import table_pdf as pdf_table
from core.report.tables import Cell, Rate, ReportTable, display
from core.report.xlsx import raw_cell

if TYPE_CHECKING:
    from core.campaign.results import CampaignResults, Estimate, ItemResult


def _value(item: ItemResult, value: float | None) -> Cell:
    return Rate(value) if item.kind == "yes_no" else value


def _estimate_row(item: ItemResult, head: str, est: Estimate) -> list[Cell]:
    return [head, est.n, _value(item, est.value), _value(item, est.low), _value(item, est.high)]


def tables(labels: Labels, res: CampaignResults) -> list[ReportTable]:
    """The report's tables: items, response per stratum, each item per stratum, comments."""

    def col(key: str) -> str:
        return labels(f"campaign.column.{key}")

    out = [
        ReportTable(
            "items",
            labels("campaign.section.items"),
            [col(k) for k in ("item", "kind", "n", "value", "low", "high", "previous", "change")],
            [
                [
                    i.item,
                    labels(f"campaign.kind.{i.kind}"),
                    *_estimate_row(i, i.item, i.overall)[1:],
                    _value(i, i.previous.value if i.previous else None),
                    _value(i, i.change),
                ]
                for i in res.items
            ],
        ),
        ReportTable(
            "response",
            labels("campaign.section.response"),
            [
                col(k)
                for k in (
                    "stratum",
                    "size",
                    "invited",
                    "answered",
                    "response_rate",
                    "coverage",
                    "reminded",
                    "not_answered",
                    "below_target",
                )
            ],
            [
                [
                    s.stratum,
                    s.size,
                    s.invited,
                    s.answered,
                    Rate(s.response_rate),
                    Rate(s.coverage),
                    s.reminded,
                    s.not_answered,
                    labels.yes_no(s.below_target),
                ]
                for s in res.strata
            ],
        ),
    ]
    for n, item in enumerate(res.items, start=1):
        out.append(
            ReportTable(
                f"item{n}",
                labels("campaign.section.item_strata", item=item.item),
                [col(k) for k in ("stratum", "n", "value", "low", "high")],
                [_estimate_row(item, k, e) for k, e in item.strata.items()],
            )
        )
    out.append(
        ReportTable(
            "comments",
            labels("campaign.section.comments"),
            [col(k) for k in ("stratum", "question", "submitted", "text")],
            [[c.stratum, c.question, labels.instant(c.submitted_at), c.text] for c in res.comments],
        )
    )
    return out


def _meta(labels: Labels, res: CampaignResults) -> list[tuple[str, str]]:
    rate = res.answered / res.invited if res.invited else None
    below = sum(1 for s in res.strata if s.below_target)
    rows = [
        (labels("campaign.name"), res.name),
        (labels("campaign.window"), f"{res.window_from} – {res.window_to}"),
        (labels("campaign.state"), res.state),
        (labels("as_of"), labels.instant(res.as_of)),
        (labels("campaign.previous"), res.previous or labels("none")),
    ]
    summary = labels(
        "campaign.summary",
        answered=res.answered,
        invited=res.invited,
        rate=labels.rate(rate),
        below=below,
        strata=len(res.strata),
    )
    notes = [labels("campaign.method")] + ([labels("campaign.masked")] if res.masked else [])
    return [*rows, ("", summary), *(("", n) for n in notes)]


def to_html(res: CampaignResults, labels: Labels) -> bytes:
    title = f"{labels('campaign.title')} {res.name}"
    meta = "".join(
        f"<li>{escape(k + ': ' if k else '')}{escape(v)}</li>" for k, v in _meta(labels, res)
    )
    foot = f"{title} · {labels('as_of')}: {labels.instant(res.as_of)}"
    body = "".join(html_table(labels, t, foot) for t in tables(labels, res))
    page = (
        f'<!DOCTYPE html><html lang="{escape(labels.lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(labels('campaign.subtitle'))}</p>"
        f"<ul>{meta}</ul>{body}</body></html>\n"
    )
    return page.encode("utf-8")


def to_pdf(res: CampaignResults, labels: Labels) -> bytes:
    title = f"{labels('campaign.title')} {res.name}"
    foot = f"{title} · {labels('as_of')}: {labels.instant(res.as_of)}"
    pdf = ReportPdf(foot)
    pdf.set_creation_date(datetime.fromisoformat(res.as_of))
    pdf.set_title(title)
    pdf.set_lang(labels.lang)
    pdf.set_creator("qloop")
    pdf.add_font(FONT, fname=str(font_path()))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font(FONT, size=18)
    pdf.multi_cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    pdf.multi_cell(0, 6, labels("campaign.subtitle"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for key, value in _meta(labels, res):
        line = f"{key}: {value}" if key else value
        pdf.multi_cell(0, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    for table in tables(labels, res):
        pdf_table(pdf, labels, table, foot)
    return bytes(pdf.output())


def to_xlsx(res: CampaignResults, labels: Labels) -> bytes:
    cols = (labels("column.indicator"), labels("column.value"))
    about = [
        dict(zip(cols, (k or labels("section.summary"), v), strict=True))
        for k, v in _meta(labels, res)
    ]
    sheets = [Table("about", cols, about)]
    for t in tables(labels, res):
        heads = tuple(t.columns)
        rows = [dict(zip(heads, [raw_cell(labels, c) for c in row], strict=True)) for row in t.rows]
        sheets.append(Table(t.key, heads, rows))
    return b"".join(xlsx_chunks(sheets, created=datetime.fromisoformat(res.as_of)))


def to_json(res: CampaignResults, labels: Labels) -> bytes:
    doc = res.to_dict()
    doc["lang"] = labels.lang
    doc["summary_text"] = [v for k, v in _meta(labels, res) if not k]
    doc["tables"] = {
        t.key: {
            "title": t.title,
            "columns": t.columns,
            "rows": [[display(labels, c) for c in row] for row in t.rows],
        }
        for t in tables(labels, res)
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def render_results(res: CampaignResults, fmt: str, lang: str, timezone: str) -> bytes:
    """The results report as a ``fmt`` document (json, html, xlsx, pdf) in ``lang``.

    Raises:
        InputError: unknown format or language (naming ``format`` or ``lang``).
    """
    check_format(fmt)
    check_lang(lang)
    labels = Labels(lang, timezone)
    render = {"json": to_json, "html": to_html, "xlsx": to_xlsx, "pdf": to_pdf}[fmt]
    return render(res, labels)
