"""The review as one self-contained HTML page (the monthly report's style; no script, no link)."""

from __future__ import annotations

from html import escape
from typing import Any

from core.report.catalogue import Labels
from core.report.html import CSS, table_html
from core.report.tables import Cell, Rate, ReportTable, Seconds
from core.report.text import indicator_name
from core.review.closure import COLUMNS
from core.review.kpi import KPIS


def _mark(labels: Labels, cell: dict[str, Any]) -> str:
    text = labels.rate(cell["rate"])
    if cell["met"] is None:
        return text
    return f"{text} {'✓' if cell['met'] else '✗'}"


def _kpi_table(labels: Labels, data: dict[str, Any], section: dict[str, Any]) -> ReportTable:
    months = [row["month"] for row in section["months"]]
    rows: list[list[Cell]] = []
    for name, path in KPIS.items():
        year = section["year"][name]
        target = section["targets"].get(name)
        rows.append(
            [
                indicator_name(labels, ".".join(path)),
                labels.rate(target) if target is not None else labels("review.no_target"),
                *(_mark(labels, row["kpis"][name]) for row in section["months"]),
                _mark(labels, year),
                year["months_met"],
                year["months_missed"],
            ]
        )
    return ReportTable(
        key=f"kpi-{section['policy']}",
        title=labels("review.kpi", policy=section["policy"]),
        columns=[
            labels("column.indicator"),
            labels("review.target"),
            *(m[5:] for m in months),
            labels("review.year_rate"),
            labels("review.months_met"),
            labels("review.months_missed"),
        ],
        rows=rows,
    )


def _closure_row(first: str, doc: dict[str, Any]) -> list[Cell]:
    return [
        first,
        *(doc[c] for c in COLUMNS),
        Rate(doc["closed_on_time_rate"]),
        Seconds(doc["median_close_s"]),
    ]


def _closure_columns(labels: Labels, first: str) -> list[str]:
    return [
        labels(first),
        *(labels(f"review.{c}") for c in COLUMNS),
        labels("review.closed_on_time_rate"),
        labels("review.median_close"),
    ]


def _closure_tables(labels: Labels, data: dict[str, Any]) -> list[ReportTable]:
    closure = data["nonconformities"]
    by_month = [_closure_row(m["month"], m) for m in closure["months"]]
    by_month.append(_closure_row(labels("review.total"), closure["total"]))
    by_severity = [
        _closure_row(labels.maybe(f"review.severity_name.{sev}", sev), doc)
        for sev, doc in closure["by_severity"].items()
    ]
    return [
        ReportTable(
            "closure", labels("review.closure"), _closure_columns(labels, "review.month"), by_month
        ),
        ReportTable(
            "closure-severity",
            labels("review.closure_severity"),
            _closure_columns(labels, "review.severity"),
            by_severity,
        ),
    ]


def _findings_table(labels: Labels, findings: list[dict[str, Any]]) -> ReportTable:
    keys = ("id", "audit", "clause", "finding", "severity", "owner", "due", "state", "closed_on")
    rows: list[list[Cell]] = [
        [
            *(
                labels.maybe(f"review.{k}_name.{f[k]}", f[k])
                if k == "severity"
                else labels.maybe(f"review.state.{f[k]}", f[k])
                if k == "state"
                else f[k]
                for k in keys
            ),
            labels.yes_no(f["overdue"]),
        ]
        for f in findings
    ]
    columns = [labels(f"review.finding.{k}") for k in (*keys, "overdue")]
    return ReportTable("findings", labels("review.findings"), columns, rows)


def to_html(data: dict[str, Any], lang: str) -> bytes:
    """The review of ``data`` (:func:`core.review.build_review`) as HTML in ``lang``."""
    labels = Labels(lang, data["timezone"])
    title = labels("review.title", year=data["year"])
    meta = (
        f"{labels('review.months')}: {data['months'][0]} – {data['months'][-1]} · "
        f"{labels('as_of')}: {labels.instant(data['as_of'])} ({data['timezone']}) · "
        f"{labels('version')}: {data['qloop_version']} · "
        f"{labels('holidays_version')}: {data['holidays_version']}"
    )
    foot = labels("generated", version=data["qloop_version"], as_of=labels.instant(data["as_of"]))
    parts = [
        f"<section><h2>{escape(labels('review.kpi', policy=s['policy']))}</h2>"
        f"<p>{escape(labels('review.kpi_note'))}</p>"
        f"{table_html(labels, _kpi_table(labels, data, s), foot)}</section>"
        for s in data["kpi"]
    ]
    parts.append(
        "<section>" + "".join(table_html(labels, t, foot) for t in _closure_tables(labels, data))
    )
    parts[-1] += "</section>"
    found = data["audit_findings"]
    intro = (
        labels("review.findings_file", file=found["file"])
        + " "
        + labels("review.findings_counts", **{k: found[k] for k in ("total", "done", "overdue")})
        if found["file"]
        else labels("review.findings_none")
    )
    parts.append(
        f"<section><h2>{escape(labels('review.findings'))}</h2><p>{escape(intro)}</p>"
        f"{table_html(labels, _findings_table(labels, found['findings']), foot)}</section>"
    )
    page = (
        f'<!DOCTYPE html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(labels('review.subtitle'))}</p>"
        f'<p class="foot">{escape(meta)}</p>{"".join(parts)}</body></html>\n'
    )
    return page.encode("utf-8")
