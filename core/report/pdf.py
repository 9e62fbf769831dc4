"""The report as a PDF for printing and mail (fpdf2), Chinese included.

The text font is Noto Sans CJK (SIL Open Font License), shipped by the
``cvttf-NotoSansCJK-Regular`` package and embedded as a subset: the PDF
shows Chinese on any machine, without system fonts. The creation date and
the file id come from ``as_of`` and the content, so the same report gives
the same bytes.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from core.errors import ConfigError
from core.report.catalogue import Labels
from core.report.charts import footer, section_charts
from core.report.model import Report
from core.report.tables import Cell, ReportTable, display, section_tables, sections
from core.report.text import summary_lines

FONT = "noto"
PDF_ROWS = 500
"""Rows a table shows in a PDF. A PDF is printed and mailed: past this, the table
ends with a line saying how many rows there are and where they all are (the
XLSX and the HTML report hold every row). fpdf2 lays out each cell, about a
millisecond each: a 100k month's full tables would take minutes."""


@cache
def font_path() -> Path:
    """The embedded CJK font's file (from the font package)."""
    try:
        import cvttf_NotoSansCJK_Regular as pkg
    except ImportError:
        msg = "the PDF report needs the cvttf-NotoSansCJK-Regular package (pip install qloop)"
        raise ConfigError(msg) from None
    path = Path(pkg.get_TTF_path())
    if not path.is_file():
        msg = f"the CJK font is missing: {path}"
        raise ConfigError(msg)
    return path


class ReportPdf(FPDF):
    """An A4 page set in the shipped CJK font, ``foot`` at the bottom of every page."""

    def __init__(self, foot: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.foot = foot

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=7)
        self.cell(0, 5, f"{self.foot} · {self.page_no()}", align="C")


def table_pdf(pdf: FPDF, labels: Labels, table: ReportTable, foot: str) -> None:
    """One table into ``pdf`` with its footnote (every document's PDF)."""
    pdf.set_font(FONT, size=10)
    pdf.multi_cell(0, 6, table.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=7)
    empty: list[Cell] = [labels("none"), *[""] * (len(table.columns) - 1)]
    rows = table.rows[:PDF_ROWS] or [empty]
    heading = FontFace(emphasis="", fill_color=(241, 243, 245))
    with pdf.table(text_align="LEFT", line_height=4.5, headings_style=heading) as t:
        head = t.row()
        for col in table.columns:
            head.cell(col)
        for row in rows:
            r = t.row()
            for cell in row:
                r.cell(display(labels, cell) if cell != "" else "")
    if len(table.rows) > PDF_ROWS:
        pdf.set_font(FONT, size=8)
        cut = labels(
            "pdf_rows_cut", shown=labels.number(PDF_ROWS), total=labels.number(len(table.rows))
        )
        pdf.multi_cell(0, 5, cut, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=6)
    pdf.multi_cell(0, 4, foot, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _section(pdf: FPDF, labels: Labels, data: dict[str, Any], section: dict[str, Any]) -> None:
    pdf.add_page()
    name = labels("policy_all") if section["policy"] == "all" else section["policy"]
    foot = footer(labels, data, section)
    pdf.set_font(FONT, size=13)
    head = f"{labels('policy')}: {name}"
    if section["version"]:
        head += f" · {labels('policy_version')}: {section['version']}"
    pdf.multi_cell(0, 8, head, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=11)
    pdf.multi_cell(0, 7, labels("section.summary"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    for line in summary_lines(labels, section):
        pdf.multi_cell(0, 5, f"• {line}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    for table in section_tables(labels, section):
        table_pdf(pdf, labels, table, foot)
    pdf.add_page()
    pdf.set_font(FONT, size=11)
    pdf.multi_cell(0, 7, labels("section.trend"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for svg in section_charts(labels, data, section, font=FONT):
        if pdf.get_y() > 200:
            pdf.add_page()
        pdf.image(io.BytesIO(svg.encode("utf-8")), w=170)
        pdf.ln(2)


def to_pdf(report: Report, lang: str) -> bytes:
    """The report as PDF in ``lang``."""
    labels = Labels(lang, report.timezone)
    data = report.data
    title = f"{labels('title')} {data['period']}"
    pdf = ReportPdf(f"{title} · {labels('as_of')}: {labels.instant(data['as_of'])}")
    pdf.set_creation_date(report.as_of)
    pdf.set_title(title)
    pdf.set_lang(lang)
    pdf.set_creator(f"qloop {data['qloop_version']}")
    pdf.add_font(FONT, fname=str(font_path()))
    pdf.add_font(FONT, style="B", fname=str(font_path()))  # bold SVG titles: the same face
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font(FONT, size=20)
    pdf.multi_cell(0, 12, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=10)
    pdf.multi_cell(0, 6, labels("subtitle"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    meta = [
        (labels("period"), data["period"]),
        (labels("as_of"), f"{labels.instant(data['as_of'])} ({data['timezone']})"),
        (labels("version"), data["qloop_version"]),
        (labels("holidays_version"), data["holidays_version"]),
    ]
    for key, value in meta:
        pdf.multi_cell(0, 6, f"{key}: {value}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for section in sections(data):
        _section(pdf, labels, data, section)
    return bytes(pdf.output())


def tables_pdf(
    labels: Labels,
    title: str,
    subtitle: str,
    meta: list[tuple[str, str]],
    tables: list[ReportTable],
    *,
    created: datetime,
) -> bytes:
    """A PDF of plain tables with the report's look and font (other documents: complaints…)."""
    about = " · ".join(f"{k}: {v}" for k, v in meta)
    pdf = ReportPdf(f"{title} · {about}")
    pdf.set_creation_date(created)
    pdf.set_title(title)
    pdf.set_lang(labels.lang)
    pdf.set_creator("qloop")
    pdf.add_font(FONT, fname=str(font_path()))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page(orientation="landscape")
    pdf.set_font(FONT, size=18)
    pdf.multi_cell(0, 11, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=10)
    pdf.multi_cell(0, 6, subtitle, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for key, value in meta:
        pdf.multi_cell(0, 6, f"{key}: {value}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    for table in tables:
        table_pdf(pdf, labels, table, about)
    return bytes(pdf.output())
