"""What the mappings say about complaints: which records are flagged, where the root cause is.

A source's mapping (and a channel's) may hold a ``complaint:`` block::

    complaint:
      flag:                          # one matcher or a list: any match flags it
        - {field: fields.labels, contains: complaint}
        - {field: fields.requestType.name, equals: Complaint}
      root_cause: {comment_prefix: "Root cause:"}      # sources only
      rectification: {comment_pattern: "(?i)rectif\\w*:\\s*(.+)"}

A matcher reads ``field`` (a dotted path, as in the rest of the mapping)
and tests it with ``equals`` (a string compared case-insensitively),
``contains`` (an element of a list, or a part of a text, case-insensitively)
or ``in`` (one of a list). A read-back spec takes a ticket ``field`` (a dotted
path into the ticket's fields, e.g. ``customfield_10070``; sources that
can read ticket fields: Jira Service Management, GLPI, ServiceNow), else the newest ticket
comment that starts with ``comment_prefix`` (the text after it) or that
``comment_pattern`` finds (its first group, else the whole match).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.errors import ConfigError
from core.mapping import get_path
from core.records import TicketNote

OPERATORS = ("equals", "contains", "in")


def flag_matchers(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The matchers of ``mapping``'s ``complaint.flag`` (none when it has no such block)."""
    block = mapping.get("complaint") or {}
    flag = block.get("flag") if isinstance(block, Mapping) else None
    if not flag:
        return []
    return [dict(m) for m in (flag if isinstance(flag, Sequence) else [flag])]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    return bool(a == b)


def _test(value: Any, matcher: Mapping[str, Any]) -> bool:
    if value is None:
        return False
    if "equals" in matcher:
        return _same(value, matcher["equals"])
    if "contains" in matcher:
        wanted = str(matcher["contains"])
        if isinstance(value, str):
            return wanted.casefold() in value.casefold()
        if isinstance(value, Sequence):
            return any(_same(item, wanted) for item in value)
        return False
    if "in" in matcher:
        return any(_same(value, option) for option in matcher["in"])
    return bool(value)  # a field alone: flagged when it is set and true


def flagged_by(raw: Any, matchers: Sequence[Mapping[str, Any]]) -> str | None:
    """The first matcher ``raw`` satisfies, in words (None: not flagged)."""
    return flagged_by_values([get_path(raw, str(m["field"])) for m in matchers], matchers)


def flagged_by_values(values: Sequence[Any], matchers: Sequence[Mapping[str, Any]]) -> str | None:
    """:func:`flagged_by` on the matchers' field values, already read (``values[i]`` is the
    value of ``matchers[i]``'s field, None when missing)."""
    for m, value in zip(matchers, values, strict=True):
        if _test(value, m):
            test = next((f"{op} {m[op]!r}" for op in OPERATORS if op in m), "is set")
            return f"{m['field']} {test}"
    return None


def json_paths(matchers: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]] | None:
    """Each matcher's field as a JSON path (its keys), for the database to read the value.

    None when a field has an empty or all-digit part: :func:`~core.mapping.get_path`
    reads such a part as a list index or a key, whichever the record holds, which one
    JSON path cannot say.
    """
    paths = [tuple(str(m["field"]).split(".")) for m in matchers]
    if any(not part or part.isdigit() for path in paths for part in path):
        return None
    return paths


def field_names(*specs: Mapping[str, Any] | None) -> list[str]:
    """The ticket fields the read-back ``specs`` read (the first part of each ``field``)."""
    return sorted({str(s["field"]).split(".")[0] for s in specs if s and s.get("field")})


def read_back(
    notes: Sequence[TicketNote],
    spec: Mapping[str, Any] | None,
    where: str,
    fields: Mapping[str, Any] | None = None,
) -> tuple[str, datetime | None] | None:
    """The text ``spec`` finds: its ticket ``field`` (from ``fields``, no time), else the newest
    matching note with the note's time (None: none).

    Raises:
        ConfigError: ``comment_pattern`` is not a regular expression (naming ``where``).
    """
    if not spec:
        return None
    if spec.get("field"):
        value = get_path(dict(fields or {}), str(spec["field"]))
        if isinstance(value, Mapping):  # a select list's option
            value = value.get("value") or value.get("name")
        text = "" if value is None else str(value).strip()
        if text:
            return text, None
        if not (spec.get("comment_prefix") or spec.get("comment_pattern")):
            return None
    prefix = spec.get("comment_prefix")
    pattern = None
    if spec.get("comment_pattern"):
        try:
            pattern = re.compile(str(spec["comment_pattern"]), re.DOTALL)
        except re.error as exc:
            msg = f"{where}.comment_pattern: not a regular expression: {exc}"
            raise ConfigError(msg, field=f"{where}.comment_pattern") from None
    for note in reversed(notes):
        text = note.text.strip()
        if prefix and text.casefold().startswith(str(prefix).casefold()):
            found = text[len(str(prefix)) :].strip()
        elif pattern is not None and (m := pattern.search(text)):
            found = (m.group(1) if m.groups() else m.group(0)).strip()
        else:
            continue
        if found:
            return found, note.at
    return None
