"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, no script.

Nothing refers to another resource (no link, image, font or script URL):
the page opens the same offline, in a mail client or from a zip.
"""

from __future__ import annotations

from html import escape
from typing import Any

from core.report.catalogue import Labels
from core.report.charts import footer, section_charts
from core.report.model import Report
from core.report.tables import ReportTable, display, section_tables, sections
from core.report.text import summary_lines

CSS = (
    "body{font-family:'Noto Sans CJK SC','Microsoft YaHei','PingFang SC',sans-serif;"
    "margin:2em;color:#222}h1{margin-bottom:0}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f1f3f5}"
    "td.n{text-align:right}caption{text-align:left;font-weight:bold;padding:4px 0}"
    ".foot{color:#666;font-size:11px}.charts svg{margin:6px;border:1px solid #eee}"
    "section{page-break-before:always}"
)


def table_html(labels: Labels, table: ReportTable, foot: str) -> str:
    """One table as HTML with its footnote (every document: report, review, campaign…)."""
    head = "".join(f"<th>{escape(col)}</th>" for col in table.columns)
    body = (
        "".join(
            "<tr>"
            + "".join(
                f'<td class="{"" if isinstance(cell, str) or cell is None else "n"}">'
                f"{escape(display(labels, cell))}</td>"
                for cell in row
            )
            + "</tr>"
            for row in table.rows
        )
        or f'<tr><td colspan="{len(table.columns)}">{escape(labels("none"))}</td></tr>'
    )
    return (
        f'<table id="{escape(table.key)}"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f'<p class="foot">{escape(foot)}</p>'
    )


def _section(labels: Labels, data: dict[str, Any], section: dict[str, Any]) -> str:
    name = labels("policy_all") if section["policy"] == "all" else section["policy"]
    foot = footer(labels, data, section)
    version = (
        f" · {escape(labels('policy_version'))}: {escape(section['version'])}"
        if section["version"]
        else ""
    )
    summary = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(labels, section))
    charts = "".join(section_charts(labels, data, section))
    tables = "".join(table_html(labels, t, foot) for t in section_tables(labels, section))
    return (
        f"<section><h2>{escape(labels('policy'))}: {escape(name)}{version}</h2>"
        f"<h3>{escape(labels('section.summary'))}</h3><ul>{summary}</ul>"
        f'<h3>{escape(labels("section.trend"))}</h3><div class="charts">{charts}</div>'
        f"{tables}</section>"
    )


def to_html(report: Report, lang: str) -> bytes:
    """The report as HTML in ``lang`` (UTF-8)."""
    labels = Labels(lang, report.timezone)
    data = report.data
    meta = (
        f"{labels('period')}: {data['period']} · {labels('as_of')}: "
        f"{labels.instant(data['as_of'])} ({data['timezone']}) · {labels('version')}: "
        f"{data['qloop_version']} · {labels('holidays_version')}: {data['holidays_version']}"
    )
    body = "".join(_section(labels, data, s) for s in sections(data))
    title = f"{labels('title')} {data['period']}"
    page = (
        f'<!DOCTYPE html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(labels('subtitle'))}</p>"
        f'<p class="foot">{escape(meta)}</p>{body}</body></html>\n'
    )
    return page.encode("utf-8")


def tables_page(
    labels: Labels,
    title: str,
    subtitle: str,
    meta: list[tuple[str, str]],
    tables: list[ReportTable],
) -> bytes:
    """A page of plain tables with the report's look (other documents: complaints…)."""
    about = " · ".join(f"{k}: {v}" for k, v in meta)
    body = "".join(table_html(labels, t, about) for t in tables)
    page = (
        f'<!DOCTYPE html><html lang="{escape(labels.lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(subtitle)}</p>"
        f'<p class="foot">{escape(about)}</p>{body}</body></html>\n'
    )
    return page.encode("utf-8")
