"""Options of the ``jira_sm`` source: their JSON Schema and the validated value object.

The config validator checks a deployment's options against
:data:`OPTIONS_SCHEMA`; :func:`resolve_options` checks them again when the
connector is built (it may be built from a dict in code) and turns them into
a frozen :class:`JiraOptions`, so the rest of the package never reads raw
option dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jsonschema

from connectors.http import http_options_schema
from connectors.windows import BACKFILL_OPTIONS_SCHEMA
from core.errors import ConfigError, InputError, Problem
from core.timeutil import parse_duration, parse_instant

_DURATION = {"type": ["string", "integer"], "description": "e.g. 2m, 30s, 1h (no bd)"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "jira_sm source options",
    "type": "object",
    "additionalProperties": False,
    "required": ["auth", "jql"],
    "oneOf": [
        {"required": ["base_url"], "not": {"required": ["cloud_id"]}},
        {"required": ["cloud_id"], "not": {"required": ["base_url"]}},
    ],
    "properties": {
        "base_url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "site URL, e.g. https://example.atlassian.net",
        },
        "cloud_id": {
            "type": "string",
            "minLength": 1,
            "description": "site id: the API base becomes {gateway_url}/ex/jira/{cloud_id}",
        },
        "gateway_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": "https://api.atlassian.com",
            "description": "Atlassian API gateway (scoped tokens, OAuth); with cloud_id only",
        },
        "auth": {
            "description": "{email, api_token} (Basic) or {bearer_token}",
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["email", "api_token"],
                    "properties": {
                        "email": {
                            "type": "string",
                            "minLength": 3,
                            "description": "Atlassian account e-mail (Basic auth, with api_token)",
                        },
                        "api_token": {
                            "type": "string",
                            "minLength": 1,
                            "description": "that account's API token, from the environment",
                        },
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["bearer_token"],
                    "properties": {
                        "bearer_token": {
                            "type": "string",
                            "minLength": 1,
                            "description": "OAuth 2.0 or scoped token, from the environment",
                        }
                    },
                },
            ],
        },
        "jql": {
            "type": "string",
            "minLength": 1,
            "description": "the incident filter, bounded, without ORDER BY",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 100,
            "description": "issues per search page (Jira returns at most 100)",
        },
        "overlap": {**_DURATION, "default": "2m"},
        "timezone_mode": {
            "enum": ["epoch", "profile"],
            "default": "epoch",
            "description": "JQL date literals as epoch ms, or in the account's profile zone",
        },
        **BACKFILL_OPTIONS_SCHEMA,
        "fetch_workers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 16,
            "default": 4,
            "description": "concurrent per-issue calls (changelog, SLA, participants) per page",
        },
        **http_options_schema(default_rate=10),
        "ticket": {
            "description": "where qloop creates its nonconformity issues",
            "type": "object",
            "additionalProperties": False,
            "required": ["project"],
            "properties": {
                "project": {
                    "type": "string",
                    "minLength": 1,
                    "description": "project key of the nonconformity issues, e.g. QA",
                },
                "issue_type": {
                    "type": "string",
                    "minLength": 1,
                    "default": "Task",
                    "description": "issue type of the nonconformity issues",
                },
                "link_type": {
                    "type": "string",
                    "minLength": 1,
                    "default": "Relates",
                    "description": "issue link type joining a nonconformity to its incident",
                },
                "resolve_transition": {
                    "type": "string",
                    "minLength": 1,
                    "description": "transition (or target status) name qloop takes to resolve a "
                    "withdrawn nonconformity's issue, e.g. Done; default: the first transition "
                    "to a status of the done category",
                },
                "labels": {
                    "type": "array",
                    "items": {"type": "string", "pattern": r"^\S+$"},
                    "description": "labels added to every nonconformity issue",
                },
            },
        },
        "contact": {
            "type": "string",
            "pattern": r"^(reporter|participants|customfield_\d+)$",
            "default": "reporter",
            "description": "reporter, participants (first with an e-mail) or a phone custom field",
        },
        "sla": {"type": "boolean", "default": True, "description": "fetch JSM SLA cycles"},
    },
}

TimezoneMode = Literal["epoch", "profile"]


@dataclass(frozen=True)
class TicketOptions:
    """Where nonconformity tickets go and how they are tagged."""

    project: str
    issue_type: str = "Task"
    link_type: str = "Relates"
    labels: tuple[str, ...] = ()
    resolve_transition: str | None = None


@dataclass(frozen=True)
class JiraOptions:
    """Validated options of one ``jira_sm`` source (see :data:`OPTIONS_SCHEMA`)."""

    api_url: str
    site_url: str | None
    email: str | None
    api_token: str | None
    bearer_token: str | None
    jql: str
    page_size: int = 100
    overlap_s: int = 120
    timezone_mode: TimezoneMode = "epoch"
    backfill_from: datetime | None = None
    backfill_parts: int = 4
    backfill_workers: int = 4
    fetch_workers: int = 4
    rate: float = 10.0
    timeout: float = 30.0
    verify_tls: bool | str = True
    ticket: TicketOptions | None = None
    contact: str = "reporter"
    sla: bool = True

    def __repr__(self) -> str:  # never show tokens
        return f"JiraOptions(api_url={self.api_url!r}, jql={self.jql!r})"


def _defaults(schema: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, prop in schema.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
    return out


def resolve_options(name: str, options: Mapping[str, Any]) -> JiraOptions:
    """Validate ``options`` of source ``name`` and build :class:`JiraOptions`.

    Raises:
        ConfigError: every problem, each at ``sources.<name>.<key>``; secret
            values are never quoted.
    """
    where = f"sources.{name}"
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    problems = [
        Problem("config", None, ".".join([where, *map(str, e.path)]), _message(e))
        for e in sorted(validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path)))
    ]
    if problems:
        msg = f"invalid options for {where}"
        raise ConfigError(msg, problems)
    opts = _defaults(OPTIONS_SCHEMA, options)
    try:
        overlap = parse_duration(opts["overlap"], allow_business_days=False).seconds
    except InputError as exc:
        msg = f"{where}.overlap: {exc}"
        raise ConfigError(msg) from None
    backfill = None
    if opts.get("backfill_from"):
        try:
            backfill = parse_instant(str(opts["backfill_from"]))
        except InputError as exc:
            msg = f"{where}.backfill_from: {exc} (write e.g. 2026-01-01T00:00:00+08:00)"
            raise ConfigError(msg) from None
    site = str(opts["base_url"]).rstrip("/") if opts.get("base_url") else None
    api = site or f"{str(opts['gateway_url']).rstrip('/')}/ex/jira/{opts['cloud_id']}"
    ticket = None
    if opts.get("ticket"):
        t = _defaults(OPTIONS_SCHEMA["properties"]["ticket"], opts["ticket"])
        ticket = TicketOptions(
            t["project"],
            t["issue_type"],
            t["link_type"],
            tuple(t.get("labels") or ()),
            t.get("resolve_transition"),
        )
    auth = opts["auth"]
    return JiraOptions(
        api_url=api,
        site_url=site,
        email=auth.get("email"),
        api_token=auth.get("api_token"),
        bearer_token=auth.get("bearer_token"),
        jql=str(opts["jql"]).strip(),
        page_size=int(opts["page_size"]),
        overlap_s=overlap,
        timezone_mode=opts["timezone_mode"],
        backfill_from=backfill,
        backfill_parts=int(opts["backfill_parts"]),
        backfill_workers=int(opts["backfill_workers"]),
        fetch_workers=int(opts["fetch_workers"]),
        rate=float(opts["rate"]),
        timeout=float(opts["timeout"]),
        verify_tls=opts["verify_tls"],
        ticket=ticket,
        contact=str(opts["contact"]),
        sla=bool(opts["sla"]),
    )


def _message(err: jsonschema.ValidationError) -> str:
    if any(str(p) == "auth" for p in err.absolute_path) or err.validator == "oneOf":
        if err.validator == "oneOf" and not err.absolute_path:
            return "give exactly one of base_url or cloud_id"
        return "auth must be {email, api_token} or {bearer_token} (values hidden)"
    return err.message
