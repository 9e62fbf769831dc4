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


def _campaigns_table(labels: Labels, campaigns: list[dict[str, Any]]) -> ReportTable:
    rows: list[list[Cell]] = []
    for c in campaigns:
        items = "; ".join(
            f"{i['item']} {labels.number(i['value'], 2)} "
            f"[{labels.number(i['low'], 2)}, {labels.number(i['high'], 2)}] (n={i['n']})"
            if i["kind"] == "score"
            else f"{i['item']} {labels.rate(i['value'])} "
            f"[{labels.rate(i['low'])}, {labels.rate(i['high'])}] (n={i['n']})"
            for i in c["items"]
        )
        rows.append(
            [
                c["name"],
                c["state"],
                f"{c['window'][0]} – {c['window'][1]}",
                c["invited"],
                c["answered"],
                Rate(c["response_rate"]),
                c["strata_below_target"],
                items,
            ]
        )
    columns = [
        labels(f"review.campaign.{k}")
        for k in ("name", "state", "window", "invited", "answered", "rate", "below", "items")
    ]
    return ReportTable("campaigns", labels("review.campaigns"), columns, rows)


def _complaints_table(labels: Labels, summary: dict[str, Any]) -> ReportTable:
    counts, medians = summary["counts"], summary["medians"]
    rows: list[list[Cell]] = [
        [labels(f"complaints.count.{k}"), counts.get(k, 0)]
        for k in ("total", "escalated", "open_past_deadline")
    ]
    rows += [
        [labels.maybe(f"complaints.{k}", k), n]
        for k, n in sorted(counts.items())
        if k.startswith(("state.", "origin."))
    ]
    rows += [
        [f"{labels('complaints.section.medians')} {labels(f'complaints.median.{k}')}", Seconds(v)]
        for k, v in medians.items()
    ]
    columns = [labels("complaints.column.what"), labels("complaints.column.count")]
    return ReportTable("complaints", labels("review.complaints"), columns, rows)


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
    parts.append(
        f"<section><h2>{escape(labels('review.campaigns'))}</h2>"
        f"<p>{escape(labels('review.campaigns_note'))}</p>"
        f"{table_html(labels, _campaigns_table(labels, data['campaigns']), foot)}"
        f"<h2>{escape(labels('review.complaints'))}</h2>"
        f"<p>{escape(labels('review.complaints_note'))}</p>"
        f"{table_html(labels, _complaints_table(labels, data['complaints']), foot)}</section>"
    )
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
