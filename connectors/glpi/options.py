"""Options of the ``glpi`` source: their JSON Schema and the resolved, typed form.

The schema is what ``qloop config validate`` checks a ``type: glpi`` block
against; :func:`resolve` validates once more (the factory may be called
without the validator), fills in defaults and returns :class:`GlpiOptions`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from connectors.http import http_options_schema
from connectors.windows import BACKFILL_OPTIONS_SCHEMA
from core.errors import ConfigError, InputError, Problem
from core.timeutil import parse_duration, parse_instant

_DURATION = {"type": ["string", "integer"], "description": "e.g. 30s, 5m, 1h (or seconds)"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "glpi source options",
    "type": "object",
    "additionalProperties": False,
    "required": ["base_url", "server_timezone"],
    "properties": {
        "base_url": {
            "type": "string",
            "pattern": r"^https?://",
            "description": "the legacy REST API root, ending in /apirest.php",
        },
        "app_token": {"type": "string", "description": "App-Token of the API client, if set"},
        "user_token": {"type": "string", "description": "personal API token of the API user"},
        "username": {"type": "string", "description": "login for Basic auth (with password)"},
        "password": {
            "type": "string",
            "description": "that user's password, from the environment: ${GLPI_PASSWORD}",
        },
        "server_timezone": {
            "type": "string",
            "description": "zone of GLPI's naive timestamps (the server's, e.g. Europe/Paris)",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": 200,
            "description": "tickets per search page (GLPI's range)",
        },
        "overlap": {**_DURATION, "default": "5m"},
        "entity": {
            "type": "integer",
            "minimum": 0,
            "description": "restrict to this entity (and its children)",
        },
        **BACKFILL_OPTIONS_SCHEMA,
        "detail_workers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 32,
            "default": 4,
            "description": "tickets whose sub-items are read at the same time",
        },
        **http_options_schema(),
        "ticket": {
            "type": "object",
            "additionalProperties": False,
            "description": "fields of the nonconformity tickets qloop creates",
            "properties": {
                "entity": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "entity of the tickets qloop creates (default: the incident's)",
                },
                "type": {
                    "type": "integer",
                    "enum": [1, 2],
                    "description": "ticket type: 1 incident, 2 request",
                },
                "urgency": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 5,
                    "description": "urgency of the tickets qloop creates, 1 (very low) to 5",
                },
                "category": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "ITIL category id of the tickets qloop creates",
                },
            },
        },
    },
    "oneOf": [
        {"required": ["user_token"], "not": {"required": ["username"]}},
        {"required": ["username", "password"], "not": {"required": ["user_token"]}},
    ],
}


@dataclass(frozen=True)
class GlpiOptions:
    """The resolved options of one ``glpi`` source."""

    base_url: str
    server_tz: ZoneInfo
    app_token: str | None = None
    user_token: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    page_size: int = 200
    overlap_s: int = 300
    entity: int | None = None
    backfill_from: datetime | None = None
    backfill_parts: int = 8
    backfill_workers: int = 4
    detail_workers: int = 4
    rate: float = 0.0
    timeout: float = 30.0
    verify_tls: bool | str = True
    ticket: Mapping[str, int] = field(default_factory=dict)


def _problems(schema: Mapping[str, Any], options: Mapping[str, Any], where: str) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path))):
        message = err.message
        if err.validator == "oneOf":
            message = "give either user_token, or username and password (not both)"
        elif any(k in str(err.path[-1] if err.path else "") for k in ("token", "password")):
            message = f"invalid value ({err.validator})"  # never quote a secret
        out.append(Problem("config", None, ".".join([where, *map(str, err.path)]), message))
    return out


def resolve(name: str, options: Mapping[str, Any]) -> GlpiOptions:
    """Validate ``options`` of source ``name`` and return them typed, defaults filled in.

    Raises:
        ConfigError: listing every problem, each at ``sources.<name>.<key>``.
    """
    where = f"sources.{name}"
    problems = _problems(OPTIONS_SCHEMA, options, where)
    if problems:
        msg = f"invalid options for {where}"
        raise ConfigError(msg, problems)
    opts = dict(options)
    for key, prop in OPTIONS_SCHEMA["properties"].items():
        if key not in opts and "default" in prop:
            opts[key] = copy.deepcopy(prop["default"])

    def fail(key: str, message: str) -> ConfigError:
        text = f"invalid options for {where}"
        return ConfigError(text, [Problem("config", None, f"{where}.{key}", message)])

    try:
        tz = ZoneInfo(opts["server_timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        problem = f"unknown time zone {opts['server_timezone']!r}"
        err = fail("server_timezone", problem)
        raise err from None
    try:
        overlap = parse_duration(opts["overlap"], allow_business_days=False).seconds
    except InputError as exc:
        err = fail("overlap", str(exc))
        raise err from None
    backfill_from = None
    if opts.get("backfill_from"):
        try:
            backfill_from = parse_instant(str(opts["backfill_from"]), tz)
        except InputError as exc:
            err = fail("backfill_from", str(exc))
            raise err from None
    base = str(opts["base_url"]).rstrip("/")
    if not base.endswith("apirest.php"):
        problem = "must end with /apirest.php (the legacy REST API root)"
        err = fail("base_url", problem)
        raise err
    return GlpiOptions(
        base_url=base,
        server_tz=tz,
        app_token=opts.get("app_token"),
        user_token=opts.get("user_token"),
        username=opts.get("username"),
        password=opts.get("password"),
        page_size=int(opts["page_size"]),
        overlap_s=int(overlap),
        entity=opts.get("entity"),
        backfill_from=backfill_from,
        backfill_parts=int(opts["backfill_parts"]),
        backfill_workers=int(opts["backfill_workers"]),
        detail_workers=int(opts["detail_workers"]),
        rate=float(opts["rate"]),
        timeout=float(opts["timeout"]),
        verify_tls=opts["verify_tls"],
        ticket=dict(opts.get("ticket") or {}),
    )
