"""The written parts of a report: the summary sentences, from the catalogue's templates."""

from __future__ import annotations

from typing import Any

from core.report.catalogue import Labels


def indicator_name(labels: Labels, path: str) -> str:
    """The catalogue's name of an indicator (dotted path)."""
    return labels(f"indicator.{path}")


def summary_lines(labels: Labels, section: dict[str, Any]) -> list[str]:
    """The summary of one section: its biggest changes against last month, as sentences."""
    moves = section["summary"]
    if not moves:
        trend = section["trend"]
        return [labels("summary.first" if len(trend) < 2 else "summary.none")]
    lines = []
    for m in moves:
        name = indicator_name(labels, m["indicator"])
        if m["change_pp"] is None:
            key = "summary.count_up" if m["direction"] == "up" else "summary.count_down"
            lines.append(labels(key, indicator=name, before=m["before"], after=m["after"]))
        else:
            key = "summary.up" if m["direction"] == "up" else "summary.down"
            lines.append(
                labels(
                    key,
                    indicator=name,
                    before=labels.rate(m["before"]),
                    after=labels.rate(m["after"]),
                    change=labels.number(m["change_pp"], 1),
                )
            )
    return lines
