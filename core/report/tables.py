"""The report's tables, shared by the HTML, PDF and XLSX renderers.

A table has a title, column labels and rows of cells; a cell is text, a
count, a :class:`Rate` or a :class:`Seconds`. HTML and PDF show
:func:`display` of a cell (locale formats); XLSX writes numbers as numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.report.catalogue import Labels
from core.report.text import indicator_name


@dataclass(frozen=True)
class Rate:
    value: float | None


@dataclass(frozen=True)
class Seconds:
    value: int | None


Cell = str | int | float | Rate | Seconds | None


@dataclass(frozen=True)
class ReportTable:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]


def display(labels: Labels, cell: Cell) -> str:
    """A cell as the reader sees it, in the labels' language."""
    if isinstance(cell, Rate):
        return labels.rate(cell.value)
    if isinstance(cell, Seconds):
        return labels.duration(cell.value)
    if cell is None:
        return labels("none")
    if isinstance(cell, bool):
        return labels.yes_no(cell)
    if isinstance(cell, float):
        return labels.number(cell, 2)
    if isinstance(cell, int):
        return labels.number(cell)
    return cell


RATIOS = (
    "callback_coverage",
    "callback_on_time",
    "confirmed_resolution",
    "csat.callback",
    "csat.survey",
    "response",
    "resolution",
)


def _ratio(ind: dict[str, Any], path: str) -> dict[str, Any]:
    node: Any = ind
    for part in path.split("."):
        node = node[part]
    return dict(node)


def _indicators(labels: Labels, ind: dict[str, Any]) -> list[list[Cell]]:
    c = labels
    rows: list[list[Cell]] = [[indicator_name(c, "resolved"), ind["resolved"], None, None]]
    rows.append([indicator_name(c, "untracked"), ind["untracked"], None, None])
    for path in RATIOS:
        r = _ratio(ind, path)
        rows.append([indicator_name(c, path), r["numerator"], r["denominator"], Rate(r["rate"])])
    for kind in ("response", "resolution"):
        for prio, r in ind[f"{kind}_by_priority"].items():
            name = f"{indicator_name(c, kind)} · {prio}"
            rows.append([name, r["numerator"], r["denominator"], Rate(r["rate"])])
    for ch, mean in ind["mean_score"].items():
        rows.append([indicator_name(c, f"mean_score.{ch}"), None, None, mean])
    for key in (
        "nonconformities_total",
        "nonconformities_closed",
        "nonconformities_open_past_deadline",
    ):
        rows.append([indicator_name(c, key), ind[key], None, None])
    return rows


def section_tables(labels: Labels, section: dict[str, Any]) -> Iterator[ReportTable]:
    """The tables of one section (a policy, or all policies together), in report order."""
    c = labels
    ind = section["indicators"]
    cols = [c("column.indicator"), c("column.numerator"), c("column.denominator"), c("column.rate")]
    yield ReportTable("indicators", c("section.indicators"), cols, _indicators(c, ind))
    for dim, groups in section["breakdown"].items():
        yield ReportTable(
            f"by_{dim}",
            c("section.breakdown", dimension=c(f"dimension.{dim}")),
            [
                c(f"column.{dim}"),
                indicator_name(c, "resolved"),
                indicator_name(c, "callback_on_time"),
                indicator_name(c, "callback_coverage"),
                indicator_name(c, "csat.survey"),
                indicator_name(c, "response"),
                indicator_name(c, "resolution"),
                indicator_name(c, "nonconformities_total"),
            ],
            [
                [
                    name or c("none"),
                    g["resolved"],
                    Rate(g["callback_on_time"]["rate"]),
                    Rate(g["callback_coverage"]["rate"]),
                    Rate(g["csat"]["survey"]["rate"]),
                    Rate(g["response"]["rate"]),
                    Rate(g["resolution"]["rate"]),
                    g["nonconformities_total"],
                ]
                for name, g in groups.items()
            ],
        )
    yield ReportTable(
        "nonconformities",
        c("section.nonconformities"),
        [c("column.rule"), c("column.major"), c("column.minor"), c("column.total")],
        [
            [
                c.maybe(f"rule.{rule}", rule),
                sev.get("major", 0),
                sev.get("minor", 0),
                sum(sev.values()),
            ]
            for rule, sev in ind["nonconformities"].items()
        ],
    )
    ncs = section["nonconformities"]
    yield ReportTable(
        "overdue",
        c("section.overdue"),
        [
            c("column.incident"),
            c("column.external_id"),
            c("column.rule"),
            c("column.severity"),
            c("column.raised_at"),
            c("column.deadline"),
            c("column.ticket"),
        ],
        [
            [
                f"{o['source']}/{o['incident_key']}",
                o["external_id"],
                c.maybe(f"rule.{o['rule']}", o["rule"]),
                c.maybe(f"severity.{o['severity']}", o["severity"]),
                c.instant(o["raised_at"]),
                c.instant(o["deadline"]),
                o["ticket_url"] or o["ticket_ref"],
            ]
            for o in ncs["overdue"]
        ],
    )
    closure = ncs["closure"]
    yield ReportTable(
        "closure",
        c("section.closure"),
        [c("column.closed"), c("column.median"), c("column.mean")],
        [[closure["closed"], Seconds(closure["median_s"]), Seconds(closure["mean_s"])]],
    )
    yield ReportTable(
        "sla",
        c("section.sla"),
        [
            c("column.incident"),
            c("column.priority"),
            c("column.kind"),
            c("column.tool_met"),
            c("column.qloop_met"),
            c("column.qloop_time"),
            c("column.target"),
            c("column.causes"),
        ],
        [
            [
                f"{d['source']}/{d['incident_key']}",
                d["priority"],
                c(f"kind.{d['kind']}"),
                c.yes_no(d["tool_met"]),
                c.yes_no(d["qloop_met"]),
                Seconds(d["qloop_s"]),
                Seconds(d["target_s"]),
                "; ".join(c.maybe(f"cause.{k}", k) for k in d["causes"]),
            ]
            for d in section["sla_disagreements"]
        ],
    )
    yield ReportTable(
        "survey",
        c("section.survey"),
        [
            c("column.stratum"),
            c("column.size"),
            c("column.picked"),
            c("column.achieved_rate"),
            c("column.answered"),
            c("column.response_rate"),
            c("column.draws"),
        ],
        [
            [
                s["stratum"],
                s["size"],
                s["picked"],
                Rate(s["achieved_rate"]),
                s["answered"],
                Rate(s["response_rate"]),
                s["draws"],
            ]
            for s in section["survey"]
        ],
    )


def sections(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's sections: each policy, then all together when there are several."""
    return [*data["policies"], *([data["all"]] if data.get("all") else [])]
