"""Options of the ``jira_sm`` source: their JSON Schema and the validated value object.

The config validator checks a deployment's options against
:data:`OPTIONS_SCHEMA`, once (``qloop validate`` and every start-up);
:func:`resolve_options` reads them through the kit's
:class:`~connectors.kit.options.Options` (the schema's defaults, typed
reads) into a frozen :class:`JiraOptions`, so the rest of the package never
reads raw option dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from connectors.http import http_options_schema
from connectors.kit.child import PULL_PROCESS_SCHEMA
from connectors.kit.options import Options
from connectors.windows import BACKFILL_OPTIONS_SCHEMA
from core.errors import ConfigError

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
            "description": "concurrent per-issue calls per page, when a page needs any "
            "(a cut changelog, SLA fields missing, participants)",
        },
        **PULL_PROCESS_SCHEMA,
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
        "sla": {
            "type": "boolean",
            "default": True,
            "description": "read JSM SLA cycles: from the search page (SLA fields found via "
            "/rest/api/3/field), else one /servicedeskapi call per issue",
        },
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
    pull_process: bool = False

    def __repr__(self) -> str:  # never show tokens
        return f"JiraOptions(api_url={self.api_url!r}, jql={self.jql!r})"


def resolve_options(name: str, options: Mapping[str, Any]) -> JiraOptions:
    """Read the options of source ``name`` (validated at config load) into :class:`JiraOptions`.

    The values are read through :class:`connectors.kit.options.Options`, with
    the schema's defaults; a value of the wrong type (options built by hand)
    is a :class:`ConfigError` naming ``sources.<name>.<key>``, and secret
    values are never quoted.

    Raises:
        ConfigError: a missing or mistyped option, both or neither of
            ``base_url`` and ``cloud_id``, an unreadable ``overlap`` or
            ``backfill_from``.
    """
    where = f"sources.{name}"
    opts = Options(where, options, OPTIONS_SCHEMA)
    if opts.has("base_url") == opts.has("cloud_id"):
        msg = f"{where}: give exactly one of base_url or cloud_id"
        raise ConfigError(msg)
    site = opts.text("base_url").rstrip("/") if opts.has("base_url") else None
    api = site or f"{opts.text('gateway_url').rstrip('/')}/ex/jira/{opts.text('cloud_id')}"
    auth = _auth(where, opts.raw("auth"))
    ticket = None
    if opts.has("ticket"):
        t = Options(f"{where}.ticket", opts.raw("ticket"), OPTIONS_SCHEMA["properties"]["ticket"])
        ticket = TicketOptions(
            t.text("project"),
            t.text("issue_type"),
            t.text("link_type"),
            tuple(t.strings("labels")),
            t.optional_text("resolve_transition"),
        )
    return JiraOptions(
        api_url=api,
        site_url=site,
        email=auth.get("email"),
        api_token=auth.get("api_token"),
        bearer_token=auth.get("bearer_token"),
        jql=opts.text("jql").strip(),
        page_size=opts.integer("page_size"),
        overlap_s=opts.seconds("overlap"),
        timezone_mode=_mode(opts),
        backfill_from=opts.instant("backfill_from"),
        backfill_parts=opts.integer("backfill_parts"),
        backfill_workers=opts.integer("backfill_workers"),
        fetch_workers=opts.integer("fetch_workers"),
        rate=opts.number("rate"),
        timeout=opts.number("timeout"),
        verify_tls=opts.raw("verify_tls", True),
        ticket=ticket,
        contact=opts.text("contact"),
        sla=opts.flag("sla"),
        pull_process=opts.flag("pull_process"),
    )


def _auth(where: str, auth: Any) -> dict[str, str]:
    """``{email, api_token}`` or ``{bearer_token}``, every value a non-empty string."""
    pairs = ({"email", "api_token"}, {"bearer_token"})
    if (
        not isinstance(auth, Mapping)
        or set(auth) not in pairs
        or not all(isinstance(v, str) and v for v in auth.values())
    ):
        msg = f"{where}.auth: must be {{email, api_token}} or {{bearer_token}} (values hidden)"
        raise ConfigError(msg)
    return {str(k): str(v) for k, v in auth.items()}


def _mode(opts: Options) -> TimezoneMode:
    mode = opts.text("timezone_mode")
    if mode not in ("epoch", "profile"):
        msg = f"{opts.where}.timezone_mode: expected epoch or profile, got {mode!r}"
        raise ConfigError(msg)
    return "epoch" if mode == "epoch" else "profile"
