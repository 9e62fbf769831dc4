"""Options of the Twilio channels: JSON Schemas, defaults and the resolved value object.

Both channel types share the account part (``account_sid`` with
``auth_token``, or an API key ``api_key_sid``/``api_key_secret``), the
webhook part (``callback_url``, checked against ``X-Twilio-Signature``)
and the HTTP part (``base_url``, ``rate``, ``timeout``). Signatures are
always made with the account's auth token, so a channel that receives
webhooks needs ``auth_token`` even when it calls the API with a key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from core.compliance.policy import policy_default
from core.errors import ConfigError, Problem

CALLBACK_WINDOW_S: int = policy_default("callback_within_s")
"""Default task timeout: the default callback window of rule R1 (the policy's, 24 h)."""
MAX_TASK_TIMEOUT_S = 1_209_600
"""TaskRouter refuses a task Timeout above two weeks."""
TASKROUTER_URL = "https://taskrouter.twilio.com"
STUDIO_URL = "https://studio.twilio.com"

_SID = {"type": "string", "pattern": "^[A-Z]{2}[0-9a-fA-F]{32}$"}

_COMMON: dict[str, Any] = {
    "account_sid": {**_SID, "description": "AC… account SID"},
    "auth_token": {
        "type": "string",
        "minLength": 1,
        "description": "account auth token: Basic auth, and the key of X-Twilio-Signature",
    },
    "api_key_sid": {**_SID, "description": "SK… API key used for REST calls instead of the token"},
    "api_key_secret": {
        "type": "string",
        "minLength": 1,
        "description": "secret of the API key (with api_key_sid), from the environment",
    },
    "from_number": {"type": "string", "minLength": 1, "description": "E.164 caller id"},
    "callback_url": {
        "type": "string",
        "pattern": "^https?://",
        "description": "qloop's public webhook URL as Twilio calls it (signature checks)",
    },
    "default_country_code": {
        "type": "string",
        "pattern": "^[1-9][0-9]{0,2}$",
        "default": "86",
        "description": "country code given to national numbers (E.164 normalisation)",
    },
    "lookback": {
        "type": "integer",
        "minimum": 60,
        "maximum": 2_592_000,
        "default": 172_800,
        "description": "seconds of history searched by send/lookup and the first collect",
    },
    "overlap": {
        "type": "integer",
        "minimum": 0,
        "maximum": 86_400,
        "default": 300,
        "description": "seconds re-read before the collect cursor (late events)",
    },
    "page_size": {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
        "description": "events or executions read per page when polling",
    },
    "rate": {"type": "number", "minimum": 0, "default": 0, "description": "requests/s (0: no cap)"},
    "timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 30,
        "description": "seconds to wait for each HTTP call",
    },
}

_AUTH_CHOICE: list[dict[str, Any]] = [
    {"required": ["auth_token"]},
    {"required": ["api_key_sid", "api_key_secret"]},
]

TASKROUTER_OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "twilio_taskrouter channel options",
    "type": "object",
    "additionalProperties": False,
    "required": ["account_sid", "workspace_sid", "workflow_sid"],
    "anyOf": _AUTH_CHOICE,
    "properties": {
        **_COMMON,
        "workspace_sid": {**_SID, "description": "WS… workspace"},
        "workflow_sid": {**_SID, "description": "WW… workflow that routes callback tasks"},
        "task_channel": {
            "type": "string",
            "minLength": 1,
            "default": "voice",
            "description": "TaskRouter task channel of the callback tasks (voice, default, ...)",
        },
        "task_timeout": {
            "type": "integer",
            "minimum": 60,
            "maximum": MAX_TASK_TIMEOUT_S,
            "default": CALLBACK_WINDOW_S,
            "description": "seconds a task lives before TaskRouter cancels it",
        },
        "base_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": TASKROUTER_URL,
            "description": "API root (change only for a proxy or a test double)",
        },
    },
}

STUDIO_OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "twilio_studio channel options",
    "type": "object",
    "additionalProperties": False,
    "required": ["account_sid", "flow_sid", "from_number"],
    "anyOf": _AUTH_CHOICE,
    "properties": {
        **_COMMON,
        "flow_sid": {**_SID, "description": "FW… Studio flow"},
        "kinds": {
            "description": "what it sends: callback tasks, survey calls or messages, or both",
            "type": "array",
            "items": {"enum": ["callback", "survey"]},
            "minItems": 1,
            "uniqueItems": True,
            "default": ["callback", "survey"],
        },
        "lookup_max_scan": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10_000,
            "default": 200,
            "description": "executions whose context lookup() may read before giving up",
        },
        "base_url": {
            "type": "string",
            "pattern": "^https?://",
            "default": STUDIO_URL,
            "description": "API root (change only for a proxy or a test double)",
        },
    },
}


def resolve_options(
    schema: Mapping[str, Any], options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Validate ``options`` against ``schema`` and fill in the schema's defaults.

    Raises:
        ConfigError: listing every problem, each at ``<where>.<key>``; secret
            values are never quoted.
    """
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path)))
    if errors:
        problems = [
            Problem("config", None, ".".join([where, *map(str, e.path)]), _safe_message(e))
            for e in errors
        ]
        msg = f"invalid options for {where}"
        raise ConfigError(msg, problems)
    resolved = dict(options)
    for key, prop in schema.get("properties", {}).items():
        if key not in resolved and "default" in prop:
            resolved[key] = copy.deepcopy(prop["default"])
    return resolved


def _safe_message(error: jsonschema.ValidationError) -> str:
    key = str(error.path[-1]) if error.path else ""
    if key in ("auth_token", "api_key_secret"):
        return f"invalid value ({error.validator} check failed)"
    if error.validator == "anyOf" and not error.path:
        return "set auth_token, or api_key_sid with api_key_secret"
    return error.message


@dataclass(frozen=True)
class Credentials:
    """Who qloop is at Twilio: REST Basic auth and the webhook signing key."""

    username: str
    password: str
    signing_key: str | None

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(username={self.username!r}, password='***')"


def credentials_of(opts: Mapping[str, Any]) -> Credentials:
    """Basic-auth pair (API key preferred when set) and the auth token for signatures."""
    token = opts.get("auth_token")
    if opts.get("api_key_sid") and opts.get("api_key_secret"):
        return Credentials(str(opts["api_key_sid"]), str(opts["api_key_secret"]), token)
    return Credentials(str(opts["account_sid"]), str(token), token)
