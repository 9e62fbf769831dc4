"""Options of the ``webhook`` channel: the JSON Schema the config validator uses, and the
typed value the channel is built from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import jsonschema

from connectors.webhook.signing import DEFAULT_TOLERANCE_S, decode_secret
from core.errors import ConfigError, InputError, Problem
from core.records import MessageKind
from core.timeutil import parse_duration

_WHSEC = {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$"}
_HTTP_URL = {"type": "string", "pattern": "^https?://[^\\s/]+(/\\S*)?$"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "webhook channel options",
    "description": (
        "A call centre or survey system that takes tasks as Standard Webhooks deliveries "
        "and posts outcomes back the same way (or serves them on poll_url)."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "signing_secret"],
    "properties": {
        "url": {**_HTTP_URL, "description": "Where tasks and invitations are POSTed."},
        "signing_secret": {**_WHSEC, "description": "whsec_… secret qloop signs tasks with."},
        "previous_secrets": {
            "type": "array",
            "items": _WHSEC,
            "default": [],
            "description": "Older secrets still accepted on inbound deliveries (rotation).",
        },
        "inbound_secret": {
            **_WHSEC,
            "description": "Secret the receiver signs outcomes with; default signing_secret.",
        },
        "tolerance": {
            "type": ["string", "integer"],
            "default": "5m",
            "description": "Largest accepted clock difference of an inbound delivery (30s, 5m…).",
        },
        "kinds": {
            "description": "what this channel sends: callback tasks, survey invitations, or both",
            "type": "array",
            "items": {"enum": ["callback", "survey"]},
            "minItems": 1,
            "uniqueItems": True,
            "default": ["callback", "survey"],
        },
        "contact": {
            "enum": ["phone", "email", "any"],
            "description": "What the receiver needs to reach a customer; default phone when "
            "the channel only takes callbacks, else any.",
        },
        "poll_url": {
            **_HTTP_URL,
            "description": "GET outcomes since a cursor (collect); none: webhooks only.",
        },
        "poll_token": {
            "type": "string",
            "minLength": 1,
            "description": "Bearer token for poll_url and status_url; none: signed GET.",
        },
        "status_url": {
            **_HTTP_URL,
            "description": "GET <status_url>/<webhook-id>: 200 {ref} or 404 (outbox lookup).",
        },
        "rate": {"type": "number", "minimum": 0, "default": 0, "description": "Requests/s."},
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 30,
            "description": "seconds to wait for each HTTP call",
        },
        "attempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10,
            "default": 4,
            "description": "tries per delivery (each signed afresh) before the outbox waits",
        },
    },
}


@dataclass(frozen=True)
class WebhookOptions:
    """The resolved options of one webhook channel (secrets decoded to HMAC keys)."""

    url: str
    signing_key: bytes
    inbound_keys: tuple[bytes, ...]
    tolerance_s: int
    kinds: frozenset[MessageKind]
    contact: Literal["phone", "email", "any"]
    poll_url: str | None
    poll_token: str | None
    status_url: str | None
    rate: float
    timeout: float
    attempts: int

    def __repr__(self) -> str:  # never show the keys
        return f"WebhookOptions(url={self.url!r}, kinds={sorted(self.kinds)})"


def _tolerance(value: Any, where: str) -> int:
    try:
        seconds = parse_duration(value, allow_business_days=False).total_seconds()
    except InputError as exc:
        msg = f"{where}.tolerance: {exc}"
        raise ConfigError(msg) from None
    if seconds <= 0:
        msg = f"{where}.tolerance: must be more than 0 seconds"
        raise ConfigError(msg)
    return seconds


def _keys(secrets: Sequence[tuple[str, str]]) -> tuple[bytes, ...]:
    keys: list[bytes] = []
    for field, text in secrets:
        key = decode_secret(text, field)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


SECRET_KEYS = frozenset({"signing_secret", "previous_secrets", "inbound_secret", "poll_token"})


def _resolve(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Options checked against :data:`OPTIONS_SCHEMA`, defaults filled; secrets never quoted."""
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    problems = []
    for err in sorted(validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path))):
        path = ".".join([where, *map(str, err.path)])
        secret = bool(err.path) and str(err.path[0]) in SECRET_KEYS
        text = f"invalid value (hidden): fails {err.validator!r}" if secret else err.message
        problems.append(Problem("config", None, path, text))
    if problems:
        msg = f"invalid options for {where}"
        raise ConfigError(msg, problems)
    resolved = dict(options)
    for key, prop in OPTIONS_SCHEMA["properties"].items():
        if key not in resolved and "default" in prop:
            default = prop["default"]
            resolved[key] = list(default) if isinstance(default, list) else default
    return resolved


def parse_options(name: str, options: Mapping[str, Any]) -> WebhookOptions:
    """Validate ``options`` of channel ``name`` and resolve defaults.

    Raises:
        ConfigError: every schema problem at ``channels.<name>.<key>``, or a
            secret that does not decode (named by key, never shown).
    """
    where = f"channels.{name}"
    opts = _resolve(options, where)
    kinds: frozenset[MessageKind] = frozenset(opts["kinds"])
    contact: Literal["phone", "email", "any"] = opts.get("contact") or (
        "phone" if kinds == {"callback"} else "any"
    )
    if "callback" in kinds and contact == "email":
        msg = f"{where}.contact: a channel taking callbacks needs phone numbers, not 'email'"
        raise ConfigError(msg)
    signing_key = decode_secret(opts["signing_secret"], f"{where}.signing_secret")
    inbound = opts.get("inbound_secret") or opts["signing_secret"]
    inbound_field = "inbound_secret" if opts.get("inbound_secret") else "signing_secret"
    previous = [
        (f"{where}.previous_secrets.{i}", s) for i, s in enumerate(opts["previous_secrets"])
    ]
    for key in ("url", "poll_url", "status_url"):
        if opts.get(key) and not urlsplit(opts[key]).netloc:
            msg = f"{where}.{key}: not an absolute http(s) URL"
            raise ConfigError(msg)
    return WebhookOptions(
        url=opts["url"],
        signing_key=signing_key,
        inbound_keys=_keys([(f"{where}.{inbound_field}", inbound), *previous]),
        tolerance_s=_tolerance(opts.get("tolerance", DEFAULT_TOLERANCE_S), where),
        kinds=kinds,
        contact=contact,
        poll_url=opts.get("poll_url"),
        poll_token=opts.get("poll_token"),
        status_url=opts.get("status_url"),
        rate=float(opts["rate"]),
        timeout=float(opts["timeout"]),
        attempts=int(opts["attempts"]),
    )
