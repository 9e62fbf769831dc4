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

A source that maps many records prepares its mapping once with
:class:`Mapper` (``Mapper(mapping).map(raw)``): the same result as
:func:`map_incident`, without reading the mapping document again for each
record.

Any bad record (missing required field, unmapped status or priority, bad
instant) raises :class:`core.errors.InputError` naming the record and the
field/path; a mapping that maps to an unknown category or priority raises
:class:`core.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import operator
import threading
from collections.abc import Callable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import fields as dataclass_fields
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
_EXPLICIT = ("first_response_at", "resolved_at", "closed_at")
_REOPEN_FROM, _REOPEN_TO = (
    (Category.RESOLVED, Category.CLOSED),
    (Category.NEW, Category.IN_PROGRESS, Category.WAITING),
)
_MISSING = object()


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
        elif isinstance(current, list) and 0 <= (index := _index(part)) < len(current):
            current = current[index]  # ("²" is a digit but no index: nothing, not an error)
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
    new = Category.NEW
    first_response = next((c.at for c in history if c.category != new), None)
    resolved: datetime | None = None
    closed: datetime | None = None
    previous: Category | None = None
    resolved_cat, closed_cat = Category.RESOLVED, Category.CLOSED
    for change in history:
        cat = change.category
        if previous in _REOPEN_FROM and cat in _REOPEN_TO:
            resolved, closed = None, None
        if cat == resolved_cat and previous != resolved_cat:
            resolved = change.at
        elif cat == closed_cat and previous != closed_cat:
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
    return _mapper(mapping, default_tz).map(raw)


_MAPPERS: dict[tuple[int, tzinfo | None], tuple[AbcMapping[str, Any], Any, Mapper]] = {}
"""Recently used mappings' :class:`Mapper`, with a copy of the document each was built from."""
_MAPPERS_LOCK = threading.Lock()


def _mapper(mapping: AbcMapping[str, Any], default_tz: tzinfo | None) -> Mapper:
    """The :class:`Mapper` of ``mapping`` (built again when the document changed since)."""
    key = (id(mapping), default_tz)
    found = _MAPPERS.get(key)
    if found is not None and found[0] is mapping and found[1] == _read_by_mapper(mapping):
        return found[2]
    mapper = Mapper(mapping, default_tz=default_tz)
    with _MAPPERS_LOCK:
        if len(_MAPPERS) >= 32:
            _MAPPERS.pop(next(iter(_MAPPERS)), None)
        _MAPPERS[key] = (mapping, copy.deepcopy(_read_by_mapper(mapping)), mapper)
    return mapper


_MAPPER_KEYS = ("record", "history", "source_sla", "status_map", "priority_map", "timezone")


def _read_by_mapper(mapping: AbcMapping[str, Any]) -> list[Any]:
    """The parts of a mapping document a :class:`Mapper` is built from."""
    return [mapping.get(k) for k in _MAPPER_KEYS]


def _index(part: str) -> int:
    """A path part as a list index (-1: not one)."""
    try:
        return int(part) if part.isdigit() else -1
    except ValueError:  # a digit that is not decimal ("²")
        return -1


def _path_getter(path: str) -> Callable[[Any], Any]:
    """:func:`get_path` for one fixed ``path`` (its parts split once)."""
    steps = tuple((part, _index(part)) for part in path.split("."))

    def get(raw: Any) -> Any:
        current = raw
        for part, index in steps:
            if type(current) is dict or isinstance(current, AbcMapping):
                current = current.get(part)
            elif isinstance(current, list) and 0 <= index < len(current):
                current = current[index]
            else:
                return None
        return current

    return _compiled_getter(steps, get)


def _compiled_getter(
    steps: tuple[tuple[str, int], ...], walk: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """``walk`` (a path's generic getter) as one generated function: plain dicts and lists
    are read inline, anything else (a ``Mapping``, a list where a key is wanted...) is
    handed to ``walk``, so the value is always :func:`get_path`'s.

    The source is built from the path's parts alone, each written by ``repr`` (a
    string or an int literal): no text of the configuration becomes code.
    """
    lines = ["def get(raw):", "    c = raw"]
    for part, index in steps:
        lines.append("    t = type(c)")
        lines.append(f"    if t is dict: c = c.get({part!r})")
        if index >= 0:
            lines.append(f"    elif t is list: c = c[{index!r}] if len(c) > {index!r} else None")
        lines.append("    elif c is None: return None")
        lines.append("    else: return walk(raw)")
    lines.append("    return c")
    namespace: dict[str, Any] = {"walk": walk}
    exec(
        compile("\n".join(lines), f"<mapping path {'.'.join(p for p, _ in steps)!r}>", "exec"),
        namespace,
    )
    getter: Callable[[Any], Any] = namespace["get"]
    return getter


class _Field:
    """A field spec compiled: ``get(raw)`` is :func:`_resolve`'s value, ``where(raw)`` its
    path (worked out only for an error message)."""

    __slots__ = ("get", "where")

    def __init__(self, spec: Any) -> None:
        self.get: Callable[[Any], Any]
        self.where: Callable[[Any], str] = lambda raw: _resolve(raw, spec)[1]
        if spec is None:
            self.get = lambda raw: None
        elif isinstance(spec, str):
            self.get, path = _path_getter(spec), spec
            self.where = lambda raw: path
        elif isinstance(spec, AbcMapping) and "const" in spec:
            const = spec["const"]
            self.get = lambda raw: const
        elif isinstance(spec, list):
            getters = [_path_getter(str(p)) for p in spec]

            def first(raw: Any) -> Any:
                for get in getters:
                    value = get(raw)
                    if value not in (None, ""):
                        return value
                return None

            self.get = first
        else:
            self.get = lambda raw: _resolve(raw, spec)[0]  # the spec's ConfigError, when used


class _Ctx:
    """What error messages need to name the record (its label is built only on failure)."""

    def __init__(self, ident: Any, key: Any) -> None:
        self._ident, self._key = ident, key

    def fail(self, message: str, field: str, path: str) -> NoReturn:
        ident, key = _opt_str(self._ident), _opt_str(self._key)
        shown = f"{key} (id {ident})" if key and ident else (ident or key or "without id")
        where = f" at {path!r}" if path else ""
        text = f"record {shown}: {field}{where}: {message}"
        raise InputError(text, record=ident, field=field, path=path)


_fromisoformat = datetime.fromisoformat


class Mapper:
    """A mapping document prepared once; :meth:`map` is :func:`map_incident` for one record.

    Field specs become getters, and the status and priority maps' exact
    entries are looked up at once. Every result and error is the one
    :func:`map_incident` gives; a mapping changed after this was built is
    not seen (build a new one).

    Raises:
        ConfigError: no ``record`` section, or an unknown ``timezone``.
    """

    def __init__(self, mapping: AbcMapping[str, Any], *, default_tz: tzinfo | None = None) -> None:
        rec = mapping.get("record")
        if not isinstance(rec, AbcMapping):
            msg = "mapping: 'record' section is missing"
            raise ConfigError(msg)
        self.tz = _timezone(mapping, default_tz)
        self._ident, self._key = _Field(rec.get("external_id")), _Field(rec.get("key"))
        self._values = [
            (name, name in _REQUIRED, _Field(rec.get(name)))
            for name in ("title", "status", "priority", "created_at", "updated_at")
        ]
        self._service, self._customer = _Field(rec.get("service")), _Field(rec.get("customer"))
        self._explicit = [  # only the mapped ones: the others are None
            (name, _Field(rec.get(name))) for name in _EXPLICIT if rec.get(name) is not None
        ]
        contact = rec.get("contact") or {}
        self._contact = [(n, _Field(contact.get(n)).get) for n in Contact.__annotations__]
        self._sla = [
            (str(n), _Field(spec).get) for n, spec in (mapping.get("source_sla") or {}).items()
        ]
        self.status_map: AbcMapping[Any, Any] = mapping.get("status_map") or {}
        self.priority_map: AbcMapping[Any, Any] = mapping.get("priority_map") or {}
        categories = {c.value: c for c in Category}
        self._categories = {
            k: categories[str(v)] for k, v in self.status_map.items() if str(v) in categories
        }
        self._priorities = {k: v for k, v in self.priority_map.items() if v in PRIORITIES}
        history = mapping.get("history") or {}
        self._history: tuple[str, Callable[[Any], Any], str, str] | None = None
        self._history_at = self._history_status = self._history_from = _path_getter("")
        self._from_path: str | None = None
        if history.get("path"):
            at, status = str(history.get("at", "at")), str(history.get("status", "status"))
            path = str(history["path"])
            self._history = (path, _path_getter(path), at, status)
            self._history_at, self._history_status = _path_getter(at), _path_getter(status)
            if history.get("from"):
                self._from_path = str(history["from"])
                self._history_from = _path_getter(self._from_path)

    def _category(
        self, ctx: _Ctx, raw_status: Any, path: str | _Field, raw: Any = None
    ) -> Category:
        """``status_map``'s category of ``raw_status`` (errors name ``path``)."""
        if isinstance(raw_status, str | int):
            found = self._categories.get(raw_status)
            if found is not None:
                return found
        where = path if isinstance(path, str) else path.where(raw)
        return _category(ctx, self.status_map, raw_status, where)

    def _instant(
        self, ctx: _Ctx, value: Any, field: str, path: str | _Field, raw: Any = None
    ) -> datetime:
        """:func:`_instant`, with ISO 8601 text carrying its offset read at once."""
        if type(value) is str:
            try:
                parsed = _fromisoformat(value)  # Python 3.11 reads "Z" as parse_instant does
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return parsed.astimezone(UTC).replace(microsecond=0)
        where = path if isinstance(path, str) else path.where(raw)
        return _instant(ctx, value, field, where, self.tz)

    def _changes(self, raw: Any, ctx: _Ctx, created: datetime) -> list[StatusChange]:
        if self._history is None:
            return []
        path, get_items, at_path, status_path = self._history
        get_at, get_status = self._history_at, self._history_status
        items = get_items(raw)
        if items is None:
            return []
        if not isinstance(items, list):
            ctx.fail("the status history is not a list", "history", path)
        out: list[StatusChange] = []
        ats: list[datetime] = []
        categories, utc = self._categories, UTC
        for i, item in enumerate(items):
            at_raw = get_at(item)
            status_raw = get_status(item)
            if at_raw is None or at_raw == "":
                ctx.fail("history entry has no instant", "history", f"{path}.{i}.{at_path}")
            if status_raw is None or status_raw == "":
                ctx.fail("history entry has no status", "history", f"{path}.{i}.{status_path}")
            at = None
            if type(at_raw) is str:  # ISO 8601 with its offset: read at once (as _instant)
                try:
                    parsed = _fromisoformat(at_raw)
                except ValueError:
                    parsed = None
                if parsed is not None and parsed.tzinfo is not None:
                    at = parsed.astimezone(utc).replace(microsecond=0)
            if at is None:
                at = self._instant(ctx, at_raw, "history", f"{path}.{i}.{at_path}")
            cat = categories.get(status_raw) if type(status_raw) is str else None
            if cat is None:
                cat = self._category(ctx, status_raw, f"{path}.{i}.{status_path}")
            out.append(StatusChange(at, cat, str(status_raw)))
            ats.append(at)
        first = 0
        if not all(map(operator.le, ats, ats[1:])):  # oldest first (a stable sort, as given)
            order = sorted(range(len(ats)), key=ats.__getitem__)
            out, first = [out[j] for j in order], order[0]
        if self._from_path is not None and out and out[0].at > created:
            value = self._history_from(items[first])
            if value not in (None, ""):
                cat = self._category(ctx, value, f"{path}.0.{self._from_path}")
                out.insert(0, StatusChange(at=created, category=cat, status=str(value)))
        return out

    def map(self, raw: AbcMapping[str, Any]) -> IncidentRecord:
        """The record ``raw`` maps to (errors: :func:`map_incident`)."""
        ident, key_value = self._ident.get(raw), self._key.get(raw)
        ctx = _Ctx(ident, key_value)
        if ident in (None, ""):
            ctx.fail("required field is missing", "external_id", self._missing(self._ident, raw))
        values: dict[str, Any] = {}
        for name, required, spec in self._values:
            value = values[name] = spec.get(raw)
            if required and value in (None, ""):
                ctx.fail("required field is missing", name, self._missing(spec, raw))
        service, customer = self._service.get(raw), self._customer.get(raw)

        created_raw = values["created_at"]
        created = self._instant(ctx, created_raw, "created_at", self._values[3][2], raw)
        history = self._changes(raw, ctx, created)
        raw_status = values["status"]
        category = self._category(ctx, raw_status, self._values[1][2], raw)
        raw_priority = values["priority"]
        priority = (
            self._priorities.get(raw_priority, _MISSING)
            if isinstance(raw_priority, str | int)
            else _MISSING
        )
        if priority is _MISSING:
            priority = _lookup(self.priority_map, raw_priority)
        if priority is _MISSING:
            known = ", ".join(repr(str(k)) for k in self.priority_map) or "(empty)"
            text = f"priority {raw_priority!r} is not in priority_map (known: {known})"
            ctx.fail(text, "priority", self._values[2][2].where(raw))
        if priority not in PRIORITIES:
            msg = (
                f"mapping: priority_map[{raw_priority!r}] = {priority!r} is not one of {PRIORITIES}"
            )
            raise ConfigError(msg)

        updated_raw = values["updated_at"]
        updated = history[-1].at if history else created
        if updated_raw not in (None, ""):
            updated = self._instant(ctx, updated_raw, "updated_at", self._values[4][2], raw)

        first_response, resolved, closed = derive_milestones(history)
        explicit: dict[str, datetime | None] = dict.fromkeys(_EXPLICIT)
        for name, spec in self._explicit:
            value = spec.get(raw)
            explicit[name] = (
                None if value in (None, "") else self._instant(ctx, value, name, spec, raw)
            )

        contact = {n: _opt_str(get(raw)) for n, get in self._contact}
        sla = {n: get(raw) for n, get in self._sla}
        external_id = str(ident)
        return _new_record(
            external_id=external_id,
            key=str(key_value) if key_value not in (None, "") else external_id,
            title=str(values["title"]),
            priority=str(priority),
            status=str(raw_status),
            category=category,
            created_at=created,
            updated_at=updated,
            history=tuple(history),
            service=_opt_str(service),
            customer=_opt_str(customer),
            contact=Contact(**contact),
            first_response_at=explicit["first_response_at"] or first_response,
            resolved_at=explicit["resolved_at"] or resolved,
            closed_at=explicit["closed_at"] or closed,
            source_sla=sla,
            raw=raw,
        )

    @staticmethod
    def _missing(spec: _Field, raw: Any) -> str:
        return spec.where(raw) or "(not mapped)"


_RECORD_FIELDS = len(dataclass_fields(IncidentRecord))


def _new_record(**values: Any) -> IncidentRecord:
    """``IncidentRecord(**values)`` for a ``values`` naming every field, without the frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field): the instance's
    ``__dict__`` is filled at once. Equal, hashable and immutable as the constructor's
    (tested, with the names :meth:`Mapper.map` passes); a call naming fewer fields
    takes the constructor and its defaults."""
    if len(values) != _RECORD_FIELDS:
        return IncidentRecord(**values)
    record = _object_new(IncidentRecord)
    record.__dict__.update(values)
    return record


_object_new = object.__new__


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str:  # the common case, without the comparisons below
        return value.strip() or None
    return None if value == "" else (str(value).strip() or None)


def _render(node: Any, values: AbcMapping[str, Any], where: str) -> Any:
    if isinstance(node, str):
        try:
            return node.format_map(values)  # str.format's C parser: string.Formatter's rules
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
