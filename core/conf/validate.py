"""Validate a qloop config file and build it, reporting every problem with file, line and key.

Three passes, all run: the JSON Schema of the whole file (``config/qloop.schema.json``);
each connector's type-specific options against the schema its type registered in
:mod:`core.registry`; then cross-references (calendars, policies, channels, sources)
and values JSON Schema cannot check (durations, cron, time zones, holidays, hours).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from datetime import date
from functools import cache, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import jsonschema
from croniter import croniter
from jsonschema.exceptions import SchemaError, ValidationError

import config
from core import registry
from core.compliance.policy import policy_default
from core.conf.loader import LineIndex, PathKey, config_error, dotted, interpolate, read_yaml
from core.conf.mapping_check import mapping_problems
from core.conf.masking import (
    MASK,
    is_secret_name,
    mask_url,
    secret_paths_of,
)
from core.conf.model import (
    CHANNEL_COMMON,
    DAYS,
    SOURCE_COMMON,
    AppConfig,
    build,
    duration,
    parse_days,
    parse_spans,
    parse_tracking_from,
    survey_channel_names,
)
from core.errors import InputError, Problem

_KINDS: tuple[tuple[str, registry.Kind, frozenset[str]], ...] = (
    ("sources", "source", SOURCE_COMMON),
    ("channels", "channel", CHANNEL_COMMON),
)
_MIN_SCRUB = 4
_NAME_RULE = "use letters, digits, '-' and '_' (at most 63, not starting with '-' or '_')"


@cache
def top_schema() -> dict[str, Any]:
    """The JSON Schema of the whole config file (``config/qloop.schema.json``)."""
    schema: dict[str, Any] = json.loads(config.path("qloop.schema.json").read_text("utf-8"))
    return schema


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _error_problems(
    err: ValidationError,
    index: LineIndex,
    prefix: PathKey,
    is_secret: Callable[[PathKey], bool],
    extra_known: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Readable problems for one JSON Schema error, never quoting a secret."""
    path: PathKey = (*prefix, *err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        known = sorted(set(props) | extra_known)
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return [
            index.problem((*path, k), f"unknown key {k!r}{hint}")
            for k in err.instance
            if k not in props and not any(re.search(p, str(k)) for p in patterns)
        ]
    if "propertyNames" in err.schema_path:
        name = err.instance if isinstance(err.instance, str | int) else str(err.instance)
        return [
            index.problem(
                (*path, name),
                f"name {_describe(err.instance)} is not allowed: {_NAME_RULE}",
            )
        ]
    if isinstance(schema.get("errorMessage"), str):  # a schema's own words for its rule
        return [index.problem(path, schema["errorMessage"])]
    secret = is_secret(path)
    if err.validator == "type":
        wanted = (
            err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        )
        words = " or ".join(("an " if str(w)[0] in "aeiou" else "a ") + str(w) for w in wanted)
        got = "a secret value of another type" if secret else _describe(err.instance)
        return [index.problem(path, f"expected {words}, got {got}")]
    message = err.message
    if secret or isinstance(err.instance, dict | list):
        message = message.replace(
            repr(err.instance), "the value (hidden)" if secret else _describe(err.instance)
        )
    return [index.problem(path, message)]


def schema_problems(schema: dict[str, Any], data: Any, index: LineIndex) -> list[Problem]:
    """Every problem of ``data`` against a JSON ``schema``, at its line (no value is secret)."""
    validator = jsonschema.Draft202012Validator(schema)
    return [
        p
        for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))
        for p in _error_problems(err, index, (), lambda _path: False)
    ]


def _connector_problems(
    data: Any, index: LineIndex, is_secret: Callable[[PathKey], bool]
) -> list[Problem]:
    """Unknown connector types, and options (block minus common keys) against their schema."""
    if not isinstance(data, dict):
        return []
    out: list[Problem] = []
    for section, kind, common in _KINDS:
        blocks = data.get(section)
        if not isinstance(blocks, dict):
            continue
        schemas = registry.schemas(kind)
        for name, block in blocks.items():
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                continue
            prefix: PathKey = (section, name)
            type_name = block["type"]
            if type_name not in schemas:
                valid = ", ".join(registry.names(kind)) or "(none registered)"
                msg = f"unknown {kind} type {type_name!r}; valid types: {valid}"
                out.append(index.problem((*prefix, "type"), msg))
                continue
            schema = schemas[type_name]
            options = {k: v for k, v in block.items() if k not in common}
            try:
                cls = jsonschema.validators.validator_for(
                    schema, default=jsonschema.Draft202012Validator
                )
                cls.check_schema(dict(schema))
            except SchemaError as exc:
                msg = f"type {type_name!r} has an invalid options schema (a bug): {exc.message}"
                out.append(index.problem((*prefix, "type"), msg))
                continue
            for err in cls(schema).iter_errors(options):
                out.extend(_error_problems(err, index, prefix, is_secret, common))
    return out


def validate(
    data: Any,
    index: LineIndex,
    *,
    secret_paths: frozenset[PathKey] = frozenset(),
    connector_types: bool = True,
) -> list[Problem]:
    """Every problem of interpolated config ``data``: schema, connector options, references.

    Args:
        data: Interpolated config data.
        index: Its line index.
        secret_paths: Paths whose values must not be quoted in messages.
        connector_types: Also check connector types and their options against
            :mod:`core.registry` (False: only the top-level schema and the
            cross-reference/value checks).

    Returns:
        Every problem found, unsorted; messages are not yet scrubbed of secret
        values (:func:`load_config` does that).
    """
    if data is None:
        return [index.problem((), "the file is empty: expected a mapping of settings")]
    is_secret = partial(_under, secret_leaves(data, secret_paths))
    problems = [
        p
        for err in jsonschema.Draft202012Validator(top_schema()).iter_errors(data)
        for p in _error_problems(err, index, (), is_secret)
    ]
    if connector_types:
        problems += _connector_problems(data, index, is_secret)
        problems += mapping_problems(data, index)
    if isinstance(data, dict):
        problems += _Refs(data, index).run()
        problems += api_token_problems(data, index)
    return list(dict.fromkeys(problems))


def secret_leaves(data: Any, explicit: Collection[PathKey] = ()) -> frozenset[PathKey]:
    """The paths of ``data`` whose values are secret (not every value near a secret).

    A value is secret when its own key looks like a secret (``token``,
    ``password``...), when it is an item of a list under such a key or inside
    a mapping under such a key (``credentials: {user: .., pass: ..}``), or
    when its path is in ``explicit`` (e.g. it came from ``${JIRA_TOKEN}``).
    A list of records under a secret-looking key (``api.tokens``) is not
    secret as a whole: in each record, only the secret-looking keys are.
    """
    found = set(map(tuple, explicit))

    def walk(value: Any, path: PathKey, secret: bool) -> None:
        named = bool(path) and is_secret_name(path[-1])
        if isinstance(value, dict):
            if secret or named:
                found.add(path)
                return
            for k, v in value.items():
                walk(v, (*path, k), False)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i), named and not isinstance(v, dict | list))
        elif secret or named:
            found.add(path)

    walk(data, (), False)
    return frozenset(found)


def _under(leaves: frozenset[PathKey], path: PathKey) -> bool:
    """True when ``path`` is, or is inside, one of the secret ``leaves``."""
    return any(tuple(path[:n]) in leaves for n in range(len(path) + 1))


def _leaf_values(data: Any, leaves: frozenset[PathKey]) -> set[str]:
    """The text of every scalar at or under the secret ``leaves`` of ``data``."""
    found: set[str] = set()

    def walk(value: Any, path: PathKey, secret: bool) -> None:
        secret = secret or path in leaves
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k), secret)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i), secret)
        elif secret and value is not None and not isinstance(value, bool) and value != "":
            found.add(str(value))

    walk(data, (), False)
    return found


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def scrub_message(message: str, secrets: Collection[str]) -> str:
    """Mask secret values quoted in a problem message, and URL passwords.

    Messages quote the values they are about (``'abc' is too short``); only
    those quotes can carry a secret, so only they are scrubbed: the words of
    the message itself, and the allowed values it lists, stay readable even
    when a secret happens to be "short" or "admin".
    """
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(m: re.Match[str]) -> str:
        text = m.group(0)
        for secret in ordered:
            text = text.replace(secret, MASK)
        return text

    return _QUOTED.sub(scrub, mask_url(message))


def _names(data: dict[str, Any], section: str) -> set[str]:
    return set(_d(data.get(section)))


def api_token_problems(data: dict[str, Any], index: LineIndex) -> list[Problem]:
    """``api.tokens``: each name and each token once, channels that exist.

    ``qloop serve`` refused these (api.auth) while ``qloop validate`` passed
    them; they live here so every command sees the same problems, with the
    file and line. No message quotes a token.
    """
    tokens = _d(data.get("api")).get("tokens")
    if not isinstance(tokens, list):
        return []
    out: list[Problem] = []
    channels = _names(data, "channels")
    names: dict[str, int] = {}
    values: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if not isinstance(tok, dict):
            continue
        where: PathKey = ("api", "tokens", i)
        name, value, listed = tok.get("name"), tok.get("token"), tok.get("channels")
        if isinstance(name, str) and name in names:
            msg = f"token name {name!r} is used twice (first at api.tokens[{names[name]}])"
            out.append(index.problem((*where, "name"), msg))
        if isinstance(value, str) and value in values:
            msg = (
                f"the same token is given twice (also at api.tokens[{values[value]}]); "
                "give each holder its own"
            )
            out.append(index.problem((*where, "token"), msg))
        if isinstance(name, str):
            names.setdefault(name, i)
        if isinstance(value, str) and value:
            values.setdefault(value, i)
        for j, ch in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(ch, str) and ch not in channels:
                known = ", ".join(sorted(channels)) or "none defined"
                msg = f"channel {ch!r} is not defined in channels ({known})"
                out.append(index.problem((*where, "channels", j), msg))
        if tok.get("role") == "channel" and not listed:
            msg = "a token of role 'channel' must list the channels it may post for (channels:)"
            out.append(index.problem((*where, "role"), msg))
    return out


_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Refs:
    """Cross-reference and value checks; each appends to ``problems``."""

    def __init__(self, data: dict[str, Any], index: LineIndex) -> None:
        self.data, self.index, self.problems = data, index, list[Problem]()

    def add(self, path: PathKey, message: str) -> None:
        self.problems.append(self.index.problem(path, message))

    def zone(self, path: PathKey, value: Any) -> None:
        if not isinstance(value, str) or not value:
            return
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.add(path, f"{value!r} is not a time zone (use an IANA name, e.g. Asia/Shanghai)")

    def cron(self, path: PathKey, value: Any) -> None:
        if not isinstance(value, str):
            return
        text = value.strip()
        ok = text in _CRON_ALIASES or (len(text.split()) == 5 and croniter.is_valid(text))
        if not ok:
            self.add(
                path,
                f"{_describe(value)} is not a valid cron expression "
                "(5 fields: minute hour day month weekday, e.g. '*/5 * * * *')",
            )

    def duration(self, path: PathKey, value: Any, *, bd: bool = True, what: str = "") -> Any:
        if not isinstance(value, str | int) or isinstance(value, bool):
            return None
        try:
            parsed = duration(value, business_days=bd)
        except InputError as exc:
            if not bd and "business days" in exc.message:
                self.add(
                    path,
                    f"{what or 'this'} is elapsed time: business days (bd) are "
                    "not allowed here, e.g. 24h",
                )
            else:
                self.add(path, exc.message)
            return None
        if parsed.total_seconds() <= 0:
            self.add(path, "must be more than zero")
            return None
        return parsed

    def tracking_from(self, path: PathKey, value: Any) -> None:
        try:
            parse_tracking_from(value, ZoneInfo("UTC"))
        except InputError as exc:
            self.add(path, exc.message)

    def date(self, path: PathKey, value: Any) -> None:
        try:
            date.fromisoformat(str(value))
        except ValueError:
            self.add(path, f"{_describe(value)} is not a valid date (YYYY-MM-DD)")

    def exists(self, path: PathKey, value: Any, section: str, what: str) -> None:
        names = _d(self.data.get(section))
        if isinstance(value, str) and value not in names:
            known = ", ".join(sorted(names)) or "none defined"
            self.add(path, f"{what} {value!r} is not defined in {section} ({known})")

    def run(self) -> list[Problem]:
        data = self.data
        self.zone(("timezone",), data.get("timezone"))
        self.url(("database_url",), data.get("database_url"), {"sqlite", "postgresql"})
        self.url(("redis_url",), data.get("redis_url"), {"redis", "rediss", "unix"})
        for name, cal in _d(data.get("calendars")).items():
            self.calendar(("calendars", name), _d(cal))
        for name, src in _d(data.get("sources")).items():
            src = _d(src)
            self.exists(
                ("sources", name, "policy"), src.get("policy", "default"), "policies", "policy"
            )
            self.cron(("sources", name, "schedule"), src.get("schedule"))
            if src.get("tracking_from") is not None:
                self.tracking_from(("sources", name, "tracking_from"), src["tracking_from"])
        for name, ch in _d(data.get("channels")).items():
            self.cron(("channels", name, "schedule"), _d(ch).get("schedule"))
        for name, pol in _d(data.get("policies")).items():
            self.policy(("policies", name), _d(pol))
        self.duration(
            ("matching", "window"),
            _d(data.get("matching")).get("window"),
            bd=False,
            what="matching.window",
        )
        outbox = _d(data.get("outbox"))
        first = self.duration(
            ("outbox", "backoff_initial"),
            outbox.get("backoff_initial"),
            bd=False,
            what="outbox.backoff_initial",
        )
        most = self.duration(
            ("outbox", "backoff_max"),
            outbox.get("backoff_max"),
            bd=False,
            what="outbox.backoff_max",
        )
        if first and most and first.seconds > most.seconds:
            self.add(("outbox", "backoff_max"), "must not be less than backoff_initial")
        for name, expr in _d(data.get("schedules")).items():
            self.cron(("schedules", name), expr)
        for name, camp in _d(data.get("campaigns")).items():
            self.campaign(("campaigns", name), _d(camp))
        complaints = _d(data.get("complaints"))
        self.duration(("complaints", "deadline"), complaints.get("deadline"))
        if complaints.get("follow_up_channel") is not None:
            self.exists(
                ("complaints", "follow_up_channel"),
                complaints["follow_up_channel"],
                "channels",
                "channel",
            )
        return self.problems

    def campaign(self, path: PathKey, camp: dict[str, Any]) -> None:
        self.exists((*path, "channel"), camp.get("channel"), "channels", "channel")
        days: dict[str, date] = {}
        window = _d(camp.get("window"))
        for where, key, value in (
            ((*path, "window", "from"), "from", window.get("from")),
            ((*path, "window", "to"), "to", window.get("to")),
            ((*path, "starts"), "starts", camp.get("starts")),
            ((*path, "ends"), "ends", camp.get("ends")),
        ):
            if value is None:
                continue
            try:
                days[key] = date.fromisoformat(str(value))
            except ValueError:
                self.date(where, value)
        if "from" in days and "to" in days and days["to"] < days["from"]:
            self.add((*path, "window", "to"), "the window ends before it starts")
        if "starts" in days and "ends" in days and days["ends"] < days["starts"]:
            self.add((*path, "ends"), "the campaign ends before it starts")

    def url(self, path: PathKey, value: Any, schemes: set[str]) -> None:
        if not isinstance(value, str) or not value:
            return
        m = re.match(r"([A-Za-z][A-Za-z0-9.-]*)(?:\+[A-Za-z0-9_]+)?://", value)
        if not m or m.group(1).lower() not in schemes:
            allowed = ", ".join(f"{s}://" for s in sorted(schemes))
            self.add(path, f"unsupported URL scheme (use {allowed})")

    def calendar(self, path: PathKey, cal: dict[str, Any]) -> None:
        self.zone((*path, "timezone"), cal.get("timezone"))
        seen: dict[int, str] = {}
        worked = False
        for key, spans in _d(cal.get("hours")).items():
            where = (*path, "hours", key)
            try:
                if isinstance(spans, str | list | type(None)):
                    worked = bool(parse_spans(spans)) or worked
            except ValueError as exc:
                worked = True  # reported: no second problem
                self.add(where, str(exc))
            try:
                for day in parse_days(key):
                    if day in seen:
                        self.add(where, f"{DAYS[day]} is already given by {seen[day]!r}")
                    seen.setdefault(day, key)
            except ValueError as exc:
                self.add(where, str(exc))
        if isinstance(cal.get("hours"), dict) and not worked:
            self.add((*path, "hours"), "no working hours on any day")
        adjusted = cal.get("adjusted_day_hours")
        if isinstance(adjusted, str | list):
            try:
                parse_spans(adjusted)
            except ValueError as exc:
                self.add((*path, "adjusted_day_hours"), str(exc))
        hol = _d(cal.get("holidays"))
        country, subdiv = hol.get("country"), hol.get("subdiv")
        supported = _countries()
        if isinstance(country, str) and country not in supported:
            hint = f" (did you mean {country.upper()!r}?)" if country.upper() in supported else ""
            self.add(
                (*path, "holidays", "country"),
                f"holiday country {country!r} is not "
                f"supported by the holidays package{hint}; use an ISO code such as CN",
            )
        elif isinstance(subdiv, str):
            if not isinstance(country, str):
                self.add((*path, "holidays", "subdiv"), "subdiv needs a country")
            elif subdiv not in supported[country]:
                valid = ", ".join(supported[country]) or "none"
                self.add(
                    (*path, "holidays", "subdiv"),
                    f"{country} has no subdivision {subdiv!r} (valid: {valid})",
                )
        for i, day in enumerate(hol.get("dates") or []):
            self.date((*path, "holidays", "dates", i), day)
        for i, day in enumerate(cal.get("extra_workdays") or []):
            self.date((*path, "extra_workdays", i), day)

    def policy(self, path: PathKey, pol: dict[str, Any]) -> None:
        self.exists((*path, "calendar"), pol.get("calendar"), "calendars", "calendar")
        for target in ("response", "resolution"):
            for prio, value in _d(pol.get(target)).items():
                self.duration((*path, target, prio), value)
        cb = _d(pol.get("callback"))
        self.exists((*path, "callback", "channel"), cb.get("channel"), "channels", "channel")
        self.duration(
            (*path, "callback", "within"), cb.get("within"), bd=False, what="callback.within"
        )
        survey = _d(pol.get("survey"))
        if "channel" in survey and "channels" in survey:
            self.add((*path, "survey", "channel"), "give either channel or channels, not both")
        elif "channels" in survey:
            for i, ch in enumerate(survey_channel_names(survey)):
                self.exists((*path, "survey", "channels", i), ch, "channels", "channel")
        elif "survey" in pol:
            self.exists((*path, "survey", "channel"), survey.get("channel"), "channels", "channel")
            if not survey.get("channel"):
                self.add((*path, "survey"), "a survey needs channel or channels")
        sat = _d(pol.get("satisfaction"))
        low = sat.get("low_below", policy_default("low_score_below"))
        major = sat.get("major_at_most", policy_default("major_score_at_most"))
        nums = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, major))
        if nums and major >= low:
            self.add(
                (*path, "satisfaction"), f"major_at_most ({major}) must be below low_below ({low})"
            )
        nc = _d(pol.get("nonconformity"))
        push_to = nc.get("push_to")
        if isinstance(push_to, str) and push_to != "source":
            self.exists((*path, "nonconformity", "push_to"), push_to, "sources", "source")
        where = (*path, "nonconformity", "rectify_within")
        rectify = self.duration(where, nc.get("rectify_within"))
        if rectify is not None and (rectify.seconds or not rectify.business_days):
            self.add(where, "must be whole business days, e.g. 10bd")


@cache
def _countries() -> dict[str, list[str]]:
    return holidays.list_supported_countries()


def load_config(
    path: Path | str, env: Mapping[str, str] | None = None, *, connector_types: bool = True
) -> AppConfig:
    """Read, interpolate, validate and build a qloop config file.

    Args:
        path: The YAML file.
        env: Environment for ``${VAR}`` (default ``os.environ``).
        connector_types: Check connector types and options against the
            connectors registered in :mod:`core.registry` at call time (import
            the connectors first).

    Returns:
        The :class:`AppConfig`.

    Raises:
        ConfigError: ``"<file>: N problems"`` with every problem, sorted by
            line; no message quotes a secret value.
    """
    file = str(path)
    data, index, problems = read_yaml(path)
    if problems and data is None:
        raise config_error(file, problems)
    interp = interpolate(data, index, os.environ if env is None else env)
    problems += interp.problems
    data = interp.data
    from_env = frozenset(
        p for p, names in interp.env_sources.items() if any(map(is_secret_name, names))
    )
    failed = {dotted(p) for p in interp.failed}  # reported already: no second problem there
    problems += [
        p
        for p in validate(data, index, secret_paths=from_env, connector_types=connector_types)
        if p.path not in failed
    ]
    if problems:
        secrets = _leaf_values(data, secret_leaves(data, from_env))
        secrets |= {v for n, v in interp.env_values.items() if is_secret_name(n)}
        # Messages never quote values at secret paths; scrubbing quoted values is a
        # second net. Very short "secrets" (1, abc) would mangle every quote: skip them.
        secrets = {v for v in secrets if len(v) >= _MIN_SCRUB}
        scrubbed = [
            Problem(p.file, p.line, p.path, scrub_message(p.message, secrets))
            for p in dict.fromkeys(problems)
        ]
        raise config_error(file, scrubbed)
    return build(data, Path(path), frozenset(secret_paths_of(data, interp.env_sources)))
