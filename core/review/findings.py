"""The internal audits' findings, read from the YAML or CSV file the auditors keep.

The format is ``config/schemas/audit-findings.schema.json``: a YAML file
holds ``findings:`` (a list), a CSV file one row per finding under a header
of the same names (empty cells are absent values). Every problem is reported
at once with the file, the line and the key, and nothing is read from a
file that has one.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import config
from core.conf.loader import LineIndex, config_error, load_yaml
from core.conf.validate import schema_problems
from core.errors import ConfigError, Problem

SCHEMA = "schemas/audit-findings.schema.json"
DONE = frozenset({"verified", "closed"})
"""States whose rectification is done and checked (need ``closed_on``)."""
PENDING = frozenset({"open", "in_progress"})
"""States whose rectification is not done: overdue once ``due`` has passed."""
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One audit finding and its rectification state."""

    id: str
    audit: str
    finding: str
    severity: str
    state: str
    audited_on: date | None = None
    clause: str | None = None
    owner: str | None = None
    due: date | None = None
    closed_on: date | None = None
    rectification: str | None = None

    def overdue(self, today: date) -> bool:
        """Rectification not done and its deadline before ``today``."""
        return self.state in PENDING and self.due is not None and self.due < today

    def document(self, today: date) -> dict[str, Any]:
        """The finding as JSON-able values, with ``overdue`` as of ``today``."""
        doc = {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items()}
        doc["overdue"] = self.overdue(today)
        return doc


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(config.path(SCHEMA).read_text("utf-8"))
    return loaded


def _csv_data(path: Path) -> tuple[dict[str, Any], LineIndex]:
    """A CSV file as ``{"findings": [...]}`` with each row's line (the header is line 1)."""
    index = LineIndex(str(path))
    text = path.read_text("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, Any]] = []
    index.lines[()] = 1
    index.lines[("findings",)] = 1
    for row in reader:
        i = len(rows)
        line = reader.line_num
        index.lines[("findings", i)] = line
        item: dict[str, Any] = {}
        for key, value in row.items():
            name = "(extra cells)" if key is None else key.strip()
            index.lines[("findings", i, name)] = line
            cell = value if isinstance(value, str) else ",".join(value or [])
            if cell.strip():
                item[name] = cell.strip()
        rows.append(item)
    return {"findings": rows}, index


def _dates(item: dict[str, Any]) -> dict[str, date | None]:
    return {
        key: date.fromisoformat(item[key]) if key in item else None
        for key in ("audited_on", "due", "closed_on")
    }


def _logic_problems(data: dict[str, Any], index: LineIndex) -> list[Problem]:
    """What the schema cannot say: unique ids, real dates, closure dates where they belong."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(data["findings"]):
        where = ("findings", i)
        if item["id"] in seen:
            first = index.line(("findings", seen[item["id"]]))
            problems.append(
                index.problem((*where, "id"), f"id {item['id']!r} again (first at line {first})")
            )
        seen.setdefault(item["id"], i)
        try:
            when = _dates(item)
        except ValueError as exc:
            problems.append(index.problem(where, f"not a date: {exc}"))
            continue
        if item["state"] in DONE and when["closed_on"] is None:
            problems.append(
                index.problem((*where, "closed_on"), f"state {item['state']} needs closed_on")
            )
        if item["state"] not in DONE and when["closed_on"] is not None:
            problems.append(
                index.problem(
                    (*where, "closed_on"),
                    f"closed_on given but state is {item['state']} (verified or closed expected)",
                )
            )
        audited, closed = when["audited_on"], when["closed_on"]
        if audited and closed and closed < audited:
            problems.append(index.problem((*where, "closed_on"), "closed_on is before audited_on"))
    return problems


def _refuse(where: str, problem: str) -> NoReturn:
    text = f"{where}: {problem}"
    raise ConfigError(text, [Problem(where, None, "", problem)])


def load_findings(path: Path) -> list[Finding]:
    """The findings of a ``.yaml``/``.yml`` or ``.csv`` file, sorted by id.

    Raises:
        ConfigError: The file cannot be read or breaks the format; every
            problem names the file, the line and the key.
    """
    where = str(path)
    if not path.is_file():
        _refuse(where, "no such file")
    if path.stat().st_size > MAX_BYTES:
        _refuse(where, f"larger than {MAX_BYTES // (1024 * 1024)} MB")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        _refuse(where, f"unknown kind of file {suffix or '(none)'!r}: give a .yaml, .yml or .csv")
    try:
        data, index = _csv_data(path) if suffix == ".csv" else load_yaml(path)
    except UnicodeDecodeError as exc:
        _refuse(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    problems = schema_problems(_schema(), data, index)
    if not problems:
        problems = _logic_problems(data, index)
    if problems:
        raise config_error(where, problems)
    found = [Finding(**{**item, **_dates(item)}) for item in data["findings"]]
    return sorted(found, key=lambda f: f.id)


def findings_section(found: list[Finding], today: date) -> dict[str, Any]:
    """The findings with their state counts: by state, by severity, overdue."""
    by_state: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for f in found:
        by_state[f.state] = by_state.get(f.state, 0) + 1
        by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
    return {
        "total": len(found),
        "by_state": dict(sorted(by_state.items())),
        "by_severity": dict(sorted(by_severity.items())),
        "done": sum(f.state in DONE for f in found),
        "overdue": sum(f.overdue(today) for f in found),
        "findings": [f.document(today) for f in found],
    }
