"""The recompute's diff report: JSON for machines, CSV and text for people."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from core.export.writers import csv_cell
from core.recompute.diff import Recompute

CSV_COLUMNS = ("policy", "incident", "source", "field", "stored", "recomputed", "causes", "why")


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def diff_document(rec: Recompute) -> dict[str, Any]:
    """The diff as a JSON-able document (sorted by policy, then incident)."""
    return {
        "period": rec.period,
        "as_of": rec.as_of.isoformat(),
        "policy_version": rec.policy_version,
        "versions": {"qloop": rec.stamps.qloop, "holidays": rec.stamps.holidays},
        "unchanged": rec.unchanged,
        "changed": len(rec.changes),
        "changes": [
            {
                "policy": c.policy,
                "incident": c.incident,
                "source": c.source,
                "stored_version": c.stored_version,
                "version": c.version,
                "fields": {k: {"stored": a, "recomputed": b} for k, (a, b) in c.fields.items()},
                "causes": c.causes,
                "why": c.detail,
            }
            for c in sorted(rec.changes, key=lambda c: (c.policy, c.source, c.incident))
        ],
    }


def diff_json(rec: Recompute) -> bytes:
    text = json.dumps(diff_document(rec), ensure_ascii=False, sort_keys=True, indent=2)
    return (text + "\n").encode("utf-8")


def diff_csv(rec: Recompute) -> bytes:
    """One row per changed field (Excel-safe UTF-8 with a BOM, as the exports)."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for c in diff_document(rec)["changes"]:
        why = "; ".join(f"{k}: {_plain(v)}" for k, v in sorted(c["why"].items()))
        for name, pair in sorted(c["fields"].items()):
            row = (
                c["policy"],
                c["incident"],
                c["source"],
                name,
                _plain(pair["stored"]),
                _plain(pair["recomputed"]),
                ",".join(c["causes"]),
                why,
            )
            writer.writerow([csv_cell(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def diff_text(rec: Recompute) -> str:
    """A short summary for the terminal: one line per changed incident."""
    lines = [
        f"recompute {rec.period} as of {rec.as_of.isoformat()}: "
        f"{len(rec.changes)} changed, {rec.unchanged} unchanged"
    ]
    for c in diff_document(rec)["changes"]:
        fields = ", ".join(
            f"{k} {_plain(v['stored'])} → {_plain(v['recomputed'])}" for k, v in c["fields"].items()
        )
        lines.append(
            f"  {c['policy']} {c['incident']} ({c['source']}): {fields} [{', '.join(c['causes'])}]"
        )
    return "\n".join(lines)
