"""Options of the ``servicenow`` source: their JSON Schema (validated once, at config load)."""

from __future__ import annotations

from typing import Any

from connectors.http import http_options_schema
from connectors.kit.child import PULL_PROCESS_SCHEMA
from connectors.windows import BACKFILL_OPTIONS_SCHEMA

_SECRET = {"type": "string", "minLength": 1}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "servicenow source options",
    "type": "object",
    "additionalProperties": False,
    "required": ["base_url", "auth"],
    "properties": {
        "base_url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "instance URL, e.g. https://example.service-now.com",
        },
        "auth": {
            "description": "{username, password} (Basic), plus client_id and client_secret for "
            "OAuth (password grant at /oauth_token.do, refreshed)",
            "type": "object",
            "additionalProperties": False,
            "required": ["username", "password"],
            "properties": {
                "username": {**_SECRET, "description": "the integration user's user_name"},
                "password": {**_SECRET, "description": "its password, from the environment"},
                "client_id": {**_SECRET, "description": "OAuth application's client id"},
                "client_secret": {**_SECRET, "description": "OAuth client secret (environment)"},
            },
            "dependentRequired": {"client_id": ["client_secret"], "client_secret": ["client_id"]},
        },
        "table": {
            "type": "string",
            "default": "incident",
            "pattern": "^[a-z0-9_]+$",
            "description": "table the incidents are read from",
        },
        "query": {
            "type": "string",
            "default": "",
            "description": "encoded query narrowing the scope (e.g. assignment_group=…); "
            "qloop adds the sys_updated_on window, the order and the own-ticket filter",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2000,
            "default": 200,
            "description": "records per page (sysparm_limit; large pages have truncated JSON)",
        },
        "overlap": {
            "type": ["string", "integer"],
            "default": "2m",
            "description": "re-read this much before the watermark (e.g. 2m)",
        },
        "deletions": {
            "type": "boolean",
            "default": True,
            "description": "read sys_audit_delete: a deleted incident becomes cancelled "
            "(the account needs read access to sys_audit_delete)",
        },
        "sla": {
            "type": "boolean",
            "default": True,
            "description": "read task_sla (has_breached, stage, planned_end_time) as source_sla",
        },
        "ticket": {
            "type": "object",
            "additionalProperties": False,
            "description": "where nonconformity tickets are created (none: not pushed here)",
            "properties": {
                "table": {
                    "type": "string",
                    "default": "incident",
                    "pattern": "^[a-z0-9_]+$",
                    "description": "table of the created tickets (incident, problem…)",
                },
                "fields": {
                    "type": "object",
                    "description": "extra field values of created tickets (assignment_group, "
                    "category, impact, urgency, caller_id…); the mapping's ticket.fields first",
                },
            },
        },
        **BACKFILL_OPTIONS_SCHEMA,
        **PULL_PROCESS_SCHEMA,
        **http_options_schema(default_rate=5),
    },
}
