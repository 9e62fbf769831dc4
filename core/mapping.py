"""Field mapping: turn a source's raw JSON into an :class:`IncidentRecord`.

Every source type ships a default mapping in ``mappings/<type>.yaml``; a
deployment overrides any part of it in its own YAML, deep-merged with
:func:`merge_mapping`. The mapping is plain data (a dict), so it can be
validated, printed and diffed.

Mapping schema (every key optional unless marked *required*)::

    record:                      # where each IncidentRecord field is read
      external_id: id            # required
      key: key                   # defaults to external_id
      title: fields.summary      # required
      status: fields.status.name # required (raw status, mapped by status_map)
      priority: fields.priority.name   # required (mapped by priority_map)
      created_at: fields.created # required (instant)
      updated_at: fields.updated # defaults to the last history instant, else created_at
      service: fields.service.name
      customer: fields.organization.name
      contact:
        name: fields.reporter.displayName
        phone: [fields.customfield_10042, fields.reporter.phone]
        email: fields.reporter.emailAddress
      first_response_at: ...     # optional; derived from the history when absent
      resolved_at: ...           # idem
      closed_at: ...             # idem
    history:                     # status history, one item per status change
      path: changelog            # path to the list in the raw record
      at: at                     # path inside an item to its instant
      status: status             # path inside an item to the new raw status
      from: fromString           # optional: previous raw status; when the first
                                 # item has one and is later than created_at, an
                                 # entry (created_at, from) is put before it
    source_sla:                  # the source's own SLA verdicts, kept as-is
      response_met: fields.sla.response_met
    status_map: {Open: new, In Progress: in_progress, ...}   # raw → category
    priority_map: {Highest: P1, High: P2, ...}               # raw → P1..P4
    timezone: Asia/Shanghai      # zone of naive instants (else they are refused)
    ticket: {title: ..., description: ..., labels: [...]}    # see render_ticket

A *field spec* is a dotted path into the raw JSON (``fields.reporter.phone``;
a numeric part indexes a list: ``participants.0.phone``), a list of paths
(the first one holding a non-empty value wins) or ``{const: value}``.
Value maps are matched exactly first, then case-insensitively; keys may be
numbers (GLPI's priorities). Instants are ISO 8601 strings, epoch seconds
or milliseconds, or datetimes; they come out aware UTC, whole seconds.
The history comes out sorted oldest first.

Any bad record (missing required field, unmapped status or priority, bad
instant) raises :class:`core.errors.InputError` naming the record and the
field/path; a mapping that maps to an unknown category or priority raises
:class:`core.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, InputError, Problem
from core.records import PRIORITIES, Category, Contact, IncidentRecord, StatusChange
from core.timeutil import parse_instant, to_utc

FieldMapping = dict[str, Any]
"""A mapping document as loaded from ``mappings/<type>.yaml``."""

_REQUIRED = ("external_id", "title", "status", "priority", "created_at")
_REOPEN_FROM, _REOPEN_TO = (
    (Category.RESOLVED, Category.CLOSED),
    (Category.NEW, Category.IN_PROGRESS, Category.WAITING),
)
_MISSING, _FORMATTER = object(), string.Formatter()


def merge_mapping(
    base: AbcMapping[str, Any], override: AbcMapping[str, Any] | None
) -> FieldMapping:
    """Deep-merge a deployment's ``override`` into ``base`` (neither is modified).

    Nested dicts merge key by key; any other value (lists included) replaces
    the base value; a ``None`` value in the override removes the key.
    """
    merged: FieldMapping = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, AbcMapping) and isinstance(merged.get(key), AbcMapping):
            merged[key] = merge_mapping(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def get_path(raw: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``raw``, or None when any step is missing."""
    current = raw
    for part in _parts(path):
        if type(current) is dict or isinstance(current, AbcMapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _resolve(raw: Any, spec: Any) -> tuple[Any, str]:
    """Value of a field spec and the path it came from (for error messages)."""
    if spec is None:
        return None, ""
    if isinstance(spec, str):
        return get_path(raw, spec), spec
    if isinstance(spec, AbcMapping) and "const" in spec:
        return spec["const"], "const"
    if isinstance(spec, list):
        for path in spec:
            value = get_path(raw, str(path))
            if value not in (None, ""):
                return value, str(path)
        return None, " | ".join(str(p) for p in spec)
    msg = f"mapping: a field spec must be a path, a list of paths or {{const: value}}, not {spec!r}"
    raise ConfigError(msg)


class _Ctx:
    """What error messages need to name the record."""

    def __init__(self, raw: Any, rec: AbcMapping[str, Any]) -> None:
        ident = _opt_str(_resolve(raw, rec.get("external_id"))[0])
        key = _opt_str(_resolve(raw, rec.get("key"))[0])
        shown = f"{key} (id {ident})" if key and ident else (ident or key or "without id")
        self.label, self.ident = f"record {shown}", ident

    def fail(self, message: str, field: str, path: str) -> NoReturn:
        where = f" at {path!r}" if path else ""
        text = f"{self.label}: {field}{where}: {message}"
        raise InputError(text, record=self.ident, field=field, path=path)


def _lookup(table: AbcMapping[Any, Any], raw_value: Any) -> Any:
    if isinstance(raw_value, str | int) and raw_value in table:
        return table[raw_value]
    wanted = str(raw_value).strip().casefold()
    for key, value in table.items():
        if str(key).strip().casefold() == wanted:
            return value
    return _MISSING


def _category(ctx: _Ctx, status_map: AbcMapping[Any, Any], raw_status: Any, path: str) -> Category:
    value = _lookup(status_map, raw_status)
    if value is _MISSING:
        known = ", ".join(repr(str(k)) for k in status_map) or "(empty)"
        ctx.fail(f"status {raw_status!r} is not in status_map (known: {known})", "status", path)
    try:
        return Category(str(value))
    except ValueError:
        valid = ", ".join(c.value for c in Category)
        msg = f"mapping: status_map[{raw_status!r}] = {value!r} is not a category ({valid})"
        raise ConfigError(msg) from None


def _instant(ctx: _Ctx, value: Any, field: str, path: str, tz: tzinfo | None) -> datetime:
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None and tz is not None:
                value = value.replace(tzinfo=tz)
            return to_utc(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > 100_000_000_000 else value
            return datetime.fromtimestamp(int(seconds), UTC)
        if isinstance(value, str):
            return _parse_text(value, tz)
    except (InputError, OverflowError, OSError, ValueError) as exc:
        ctx.fail(f"bad instant {value!r} ({exc})", field, path)
    ctx.fail(f"bad instant {value!r}", field, path)


@lru_cache(maxsize=16384)
def _parse_text(text: str, tz: tzinfo | None) -> datetime:
    return parse_instant(text, tz)


def _timezone(mapping: AbcMapping[str, Any], default_tz: tzinfo | None) -> tzinfo | None:
    name = mapping.get("timezone")
    if default_tz is not None or not name:
        return default_tz
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"mapping: unknown timezone {name!r}"
        raise ConfigError(msg) from None


def _history(
    raw: Any, mapping: AbcMapping[str, Any], ctx: _Ctx, created: datetime, tz: tzinfo | None
) -> list[StatusChange]:
    spec = mapping.get("history") or {}
    if not spec.get("path"):
        return []
    path = str(spec["path"])
    items = get_path(raw, path)
    if items is None:
        return []
    if not isinstance(items, list):
        ctx.fail("the status history is not a list", "history", path)
    status_map = mapping.get("status_map") or {}
    at_path, status_path = str(spec.get("at", "at")), str(spec.get("status", "status"))
    entries: list[tuple[StatusChange, Any]] = []
    for i, item in enumerate(items):
        at_raw = get_path(item, at_path)
        status_raw = get_path(item, status_path)
        if at_raw in (None, ""):
            ctx.fail("history entry has no instant", "history", f"{path}.{i}.{at_path}")
        if status_raw in (None, ""):
            ctx.fail("history entry has no status", "history", f"{path}.{i}.{status_path}")
        at = _instant(ctx, at_raw, "history", f"{path}.{i}.{at_path}", tz)
        cat = _category(ctx, status_map, status_raw, f"{path}.{i}.{status_path}")
        entries.append((StatusChange(at=at, category=cat, status=str(status_raw)), item))
    entries.sort(key=lambda entry: entry[0].at)
    out = [change for change, _ in entries]
    from_path = spec.get("from")
    if from_path and out and out[0].at > created:
        before = get_path(entries[0][1], str(from_path))
        if before not in (None, ""):
            cat = _category(ctx, status_map, before, f"{path}.0.{from_path}")
            out.insert(0, StatusChange(at=created, category=cat, status=str(before)))
    return out


def derive_milestones(
    history: Sequence[StatusChange],
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """``(first_response_at, resolved_at, closed_at)`` from a status history (SPEC §10).

    First response: the first instant the incident is in a category other
    than ``new``. Resolved: the last entry into ``resolved`` after the last
    reopen (the entry into ``closed`` when it never entered ``resolved``),
    None when reopened since. Closed: the last entry into ``closed`` after
    the last reopen.
    """
    first_response = next((c.at for c in history if c.category != Category.NEW), None)
    resolved: datetime | None = None
    closed: datetime | None = None
    previous: Category | None = None
    for change in history:
        cat = change.category
        if previous in _REOPEN_FROM and cat in _REOPEN_TO:
            resolved, closed = None, None
        if cat == Category.RESOLVED and previous != Category.RESOLVED:
            resolved = change.at
        elif cat == Category.CLOSED and previous != Category.CLOSED:
            closed = change.at
            if resolved is None:
                resolved = change.at
        previous = cat
    return first_response, resolved, closed


def map_incident(
    raw: AbcMapping[str, Any], mapping: AbcMapping[str, Any], *, default_tz: tzinfo | None = None
) -> IncidentRecord:
    """Map one raw source record to an :class:`IncidentRecord` (schema: module docstring).

    Args:
        raw: the record as the source returned it (kept in ``raw``).
        mapping: the merged mapping document.
        default_tz: zone of naive instants; overrides the mapping's ``timezone``.

    Raises:
        InputError: a required field is missing, a status or priority is not
            mapped, or an instant is malformed; the message names the record
            and the field/path.
        ConfigError: the mapping itself is unusable.
    """
    rec = mapping.get("record")
    if not isinstance(rec, AbcMapping):
        msg = "mapping: 'record' section is missing"
        raise ConfigError(msg)
    ctx = _Ctx(raw, rec)
    tz = _timezone(mapping, default_tz)
    values: dict[str, Any] = {}
    for name in (*_REQUIRED, "key", "updated_at", "service", "customer"):
        value, path = _resolve(raw, rec.get(name))
        if name in _REQUIRED and value in (None, ""):
            ctx.fail("required field is missing", name, path or "(not mapped)")
        values[name] = (value, path)

    created = _instant(ctx, values["created_at"][0], "created_at", values["created_at"][1], tz)
    history = _history(raw, mapping, ctx, created, tz)
    raw_status, status_path = values["status"]
    category = _category(ctx, mapping.get("status_map") or {}, raw_status, status_path)
    raw_priority, priority_path = values["priority"]
    priority = _lookup(mapping.get("priority_map") or {}, raw_priority)
    if priority is _MISSING:
        known = ", ".join(repr(str(k)) for k in (mapping.get("priority_map") or {})) or "(empty)"
        text = f"priority {raw_priority!r} is not in priority_map (known: {known})"
        ctx.fail(text, "priority", priority_path)
    if priority not in PRIORITIES:
        msg = f"mapping: priority_map[{raw_priority!r}] = {priority!r} is not one of {PRIORITIES}"
        raise ConfigError(msg)

    updated_raw, updated_path = values["updated_at"]
    updated = history[-1].at if history else created
    if updated_raw not in (None, ""):
        updated = _instant(ctx, updated_raw, "updated_at", updated_path, tz)

    first_response, resolved, closed = derive_milestones(history)
    explicit: dict[str, datetime | None] = {}
    for name in ("first_response_at", "resolved_at", "closed_at"):
        value, path = _resolve(raw, rec.get(name))
        explicit[name] = None if value in (None, "") else _instant(ctx, value, name, path, tz)

    contact_spec = rec.get("contact") or {}
    contact = {n: _opt_str(_resolve(raw, contact_spec.get(n))[0]) for n in Contact.__annotations__}
    sla = {str(n): _resolve(raw, spec)[0] for n, spec in (mapping.get("source_sla") or {}).items()}
    key_value = values["key"][0]
    return IncidentRecord(
        external_id=str(values["external_id"][0]),
        key=str(key_value) if key_value not in (None, "") else str(values["external_id"][0]),
        title=str(values["title"][0]),
        priority=str(priority),
        status=str(raw_status),
        category=category,
        created_at=created,
        updated_at=updated,
        history=tuple(history),
        service=_opt_str(values["service"][0]),
        customer=_opt_str(values["customer"][0]),
        contact=Contact(**contact),
        first_response_at=explicit["first_response_at"] or first_response,
        resolved_at=explicit["resolved_at"] or resolved,
        closed_at=explicit["closed_at"] or closed,
        source_sla=sla,
        raw=raw,
    )


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else (str(value).strip() or None)


def _render(node: Any, values: AbcMapping[str, Any], where: str) -> Any:
    if isinstance(node, str):
        try:
            return _FORMATTER.vformat(node, (), values)
        except KeyError as exc:
            msg = f"ticket template {where}: no value for placeholder {{{exc.args[0]}}}"
            raise InputError(msg, placeholder=str(exc.args[0]), path=where) from None
        except (IndexError, AttributeError, ValueError) as exc:
            msg = f"ticket template {where}: cannot render {node!r}: {exc}"
            raise InputError(msg, path=where) from None
    if isinstance(node, AbcMapping):
        return {k: _render(v, values, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_render(v, values, f"{where}.{i}") for i, v in enumerate(node)]
    return node


def render_ticket(template: AbcMapping[str, Any], values: AbcMapping[str, Any]) -> dict[str, Any]:
    """Render a ticket template: every string is a ``str.format`` pattern over ``values``.

    Nested dicts and lists are rendered recursively; other values are kept.
    Literal braces are written ``{{`` and ``}}``.

    Raises:
        InputError: a placeholder has no value (the message names it and
            where it is in the template) or a pattern is malformed.
    """
    return {str(k): _render(v, values, str(k)) for k, v in template.items()}


def validate_mapping(mapping: AbcMapping[str, Any], file: str = "mapping") -> None:
    """Check a mapping document's shape and value maps; ConfigError lists every problem."""
    rec = mapping.get("record")
    found = [] if isinstance(rec, AbcMapping) else [("record", "section is missing")]
    rec = rec if isinstance(rec, AbcMapping) else {}
    found += [(f"record.{n}", "required field is not mapped") for n in _REQUIRED if not rec.get(n)]
    categories = {c.value for c in Category}
    for raw_status, value in (mapping.get("status_map") or {}).items():
        if str(value) not in categories:
            found.append((f"status_map.{raw_status}", f"{value!r} is not a category"))
    for raw_priority, value in (mapping.get("priority_map") or {}).items():
        if value not in PRIORITIES:
            found.append((f"priority_map.{raw_priority}", f"{value!r} is not P1..P4"))
    if found:
        msg = f"invalid mapping {file}"
        raise ConfigError(msg, [Problem(file, None, path, text) for path, text in found])
