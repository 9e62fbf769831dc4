"""Options of the ``glpi`` source: their JSON Schema and the resolved, typed form.

The schema is what ``qloop validate`` (and every configuration load) checks
a ``type: glpi`` block against, once. :func:`resolve` then reads the
options through the kit's :class:`~connectors.kit.options.Options` (the
schema's defaults filled in, values typed) and checks only what a schema
cannot say: the time zone exists, ``base_url`` is the legacy API root, the
durations and instants parse; and, as the session needs them, that exactly
one kind of credentials is given (the schema's ``oneOf``, worded plainly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.http import http_options_schema
from connectors.kit.child import PULL_PROCESS_SCHEMA
from connectors.kit.options import Options
from connectors.windows import BACKFILL_OPTIONS_SCHEMA
from core.errors import ConfigError, InputError, Problem
from core.timeutil import parse_instant

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
        **PULL_PROCESS_SCHEMA,
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
    pull_process: bool = False
    rate: float = 0.0
    timeout: float = 30.0
    verify_tls: bool | str = True
    ticket: Mapping[str, int] = field(default_factory=dict)


def resolve(name: str, options: Mapping[str, Any]) -> GlpiOptions:
    """The typed options of source ``name``, defaults filled in (already schema-valid).

    Raises:
        ConfigError: a value the schema cannot check (zone, base URL, a
            duration or instant that does not parse, a value of the wrong
            type in options built by hand), at ``sources.<name>.<key>``.
    """
    where = f"sources.{name}"
    opts = Options(where, options, OPTIONS_SCHEMA)

    def fail(key: str, message: str) -> ConfigError:
        text = f"invalid options for {where}"
        return ConfigError(text, [Problem("config", None, f"{where}.{key}", message)])

    try:
        tz = ZoneInfo(opts.text("server_timezone"))
    except (ZoneInfoNotFoundError, ValueError):
        problem = f"unknown time zone {opts.raw('server_timezone')!r}"
        err = fail("server_timezone", problem)
        raise err from None
    try:
        overlap = opts.seconds("overlap")
    except ConfigError as exc:
        err = fail("overlap", str(exc).split(": ", 1)[-1])
        raise err from None
    backfill_from = None
    if opts.has("backfill_from"):
        try:
            backfill_from = parse_instant(str(opts.raw("backfill_from")), tz)
        except InputError as exc:
            err = fail("backfill_from", str(exc))
            raise err from None
    if opts.has("user_token") == (opts.has("username") and opts.has("password")):
        text = f"invalid options for {where}"
        problem = "give either user_token, or username and password (not both)"
        raise ConfigError(text, [Problem("config", None, where, problem)])
    base = opts.text("base_url").rstrip("/")
    if not base.endswith("apirest.php"):
        err = fail("base_url", "must end with /apirest.php (the legacy REST API root)")
        raise err
    return GlpiOptions(
        base_url=base,
        server_tz=tz,
        app_token=opts.optional_text("app_token"),
        user_token=opts.optional_text("user_token"),
        username=opts.optional_text("username"),
        password=opts.optional_text("password"),
        page_size=opts.integer("page_size"),
        overlap_s=overlap,
        entity=opts.integer("entity") if opts.has("entity") else None,
        backfill_from=backfill_from,
        backfill_parts=opts.integer("backfill_parts"),
        backfill_workers=opts.integer("backfill_workers"),
        detail_workers=opts.integer("detail_workers"),
        pull_process=opts.flag("pull_process"),
        rate=opts.number("rate"),
        timeout=opts.number("timeout"),
        verify_tls=opts.raw("verify_tls", True),
        ticket={k: int(v) for k, v in opts.section("ticket").values.items()},
    )
