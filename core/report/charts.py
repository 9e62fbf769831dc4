"""SVG charts of a report section, drawn in Python (no JavaScript, no external resource).

Each function returns one self-contained ``<svg>`` string with its title,
unit, period, policy, ``as_of`` and qloop version written in the chart, so
the HTML report and the QA page can inline it as is. Text is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Any

from core.report.catalogue import Labels

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 48, 56
PALETTE = ("#1f6feb", "#d9480f", "#2f9e44", "#9c36b5", "#e8590c", "#0c8599", "#868e96")


FONT_FAMILY = "sans-serif"
_TITLES = re.compile(r"<title>[^<]*</title>")
"""Tooltips: for a browser only (a PDF renderer does not know the element)."""


def _frame(title: str, unit: str, footer: str, body: str, legend: Sequence[tuple[str, str]]) -> str:
    items = "".join(
        f'<rect x="{WIDTH - RIGHT + 12}" y="{TOP + 18 * i}" width="10" height="10" fill="{c}"/>'
        f'<text x="{WIDTH - RIGHT + 28}" y="{TOP + 18 * i + 9}" font-size="11">{escape(n)}</text>'
        for i, (n, c) in enumerate(legend)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'font-family="{FONT_FAMILY}">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'<text x="{LEFT}" y="36" font-size="11" fill="#555">{escape(unit)}</text>'
        f"{body}{items}"
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10" fill="#555">{escape(footer)}</text>'
        "</svg>"
    )


def _axes(months: Sequence[str], top: float) -> str:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    lines = [
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>',
    ]
    for k in range(5):
        y = TOP + plot_h - plot_h * k / 4
        value = top * k / 4
        label = f"{value:g}"
        lines.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>'
        )
    step = plot_w / max(len(months), 1)
    for i, month in enumerate(months):
        x = LEFT + step * (i + 0.5)
        lines.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 14}" font-size="9" '
            f'text-anchor="middle">{escape(month[2:])}</text>'
        )
    return "".join(lines)


def line_chart(
    title: str,
    unit: str,
    footer: str,
    months: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    top: float,
) -> str:
    """Lines over the months (gaps where a value is None), scaled 0..``top``."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(months), 1)
    body = [_axes(months, top)]
    legend = []
    for n, (name, values) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        legend.append((name, color))
        points: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                points.append([])
                continue
            x = LEFT + step * (i + 0.5)
            y = TOP + plot_h - plot_h * min(v, top) / top
            points[-1].append(f"{x:.1f},{y:.1f}")
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
        for run in points:
            if len(run) > 1:
                body.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                    'stroke-width="2"/>'
                )
    return _frame(title, unit, footer, "".join(body), legend)


def stacked_bars(
    title: str,
    unit: str,
    footer: str,
    months: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
) -> str:
    """Stacked bars of counts per month."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    totals = [sum(vals[i] for _, vals in series) for i in range(len(months))]
    most = max([*totals, 1])
    top = float(most if most % 4 == 0 else most + 4 - most % 4)
    step = plot_w / max(len(months), 1)
    body = [_axes(months, top)]
    legend = []
    base = [0] * len(months)
    for n, (name, values) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        legend.append((name, color))
        for i, v in enumerate(values):
            if not v:
                continue
            h = plot_h * v / top
            y = TOP + plot_h - plot_h * base[i] / top - h
            x = LEFT + step * i + step * 0.2
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.6:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{escape(name)}: {v}</title></rect>'
            )
            base[i] += v
    return _frame(title, unit, footer, "".join(body), legend)


def footer(labels: Labels, data: dict[str, Any], section: dict[str, Any]) -> str:
    """Period, policy, as_of and qloop version, for under a chart or a table."""
    policy = labels("policy_all") if section["policy"] == "all" else section["policy"]
    return (
        f"{labels('period')}: {data['period']} · {labels('policy')}: {policy} · "
        f"{labels('as_of')}: {labels.instant(data['as_of'])} · "
        f"{labels('version')}: {data['qloop_version']}"
    )


def _pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else v * 100 for v in values]


def section_charts(
    labels: Labels, data: dict[str, Any], section: dict[str, Any], *, font: str | None = None
) -> list[str]:
    """The six trend charts of a section (§12): SVG strings, in report order.

    ``font``: the font family the SVG text asks for (default ``sans-serif``;
    the PDF passes its embedded font).
    """
    charts = _charts(labels, data, section)
    if font is None:
        return charts
    return [
        _TITLES.sub("", svg.replace(f'font-family="{FONT_FAMILY}"', f'font-family="{font}"', 1))
        for svg in charts
    ]


def _charts(labels: Labels, data: dict[str, Any], section: dict[str, Any]) -> list[str]:
    trend = section["trend"]
    months = [t["month"] for t in trend]
    foot = footer(labels, data, section)
    rate_unit = labels("unit_rate")
    channels = list(trend[-1]["csat"]) if trend else []
    priorities = list(trend[-1]["response_by_priority"]) if trend else []
    rules = list(trend[-1]["nonconformities"]) if trend else []
    charts = [
        line_chart(
            labels("chart.callback"),
            rate_unit,
            foot,
            months,
            [
                (labels("chart.callback_on_time"), _pct([t["callback_on_time"] for t in trend])),
                (labels("chart.callback_coverage"), _pct([t["callback_coverage"] for t in trend])),
            ],
            100.0,
        ),
        line_chart(
            labels("chart.csat"),
            rate_unit,
            foot,
            months,
            [(labels(f"channel.{c}"), _pct([t["csat"].get(c) for t in trend])) for c in channels],
            100.0,
        ),
        line_chart(
            labels("chart.mean"),
            labels("unit_score"),
            foot,
            months,
            [(labels(f"channel.{c}"), [t["mean_score"].get(c) for t in trend]) for c in channels],
            5.0,
        ),
    ]
    for kind in ("response", "resolution"):
        charts.append(
            line_chart(
                labels(f"chart.{kind}"),
                rate_unit,
                foot,
                months,
                [(p, _pct([t[f"{kind}_by_priority"].get(p) for t in trend])) for p in priorities],
                100.0,
            )
        )
    nc_series = [
        (
            f"{labels.maybe(f'rule.{r}', r)} · {labels(f'severity.{sev}')}",
            [t["nonconformities"].get(r, {}).get(sev, 0) for t in trend],
        )
        for r in rules
        for sev in ("major", "minor")
    ]
    charts.append(
        stacked_bars(
            labels("chart.nonconformities"),
            labels("unit_count"),
            foot,
            months,
            [s for s in nc_series if any(s[1])],
        )
    )
    return charts
