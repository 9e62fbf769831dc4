"""Options of the ``limesurvey`` channel: JSON Schema, defaults and a frozen value object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from connectors.http import http_options_schema
from core.errors import ConfigError, Problem

_ATTRIBUTE = {"type": "string", "pattern": "^attribute_[1-9][0-9]*$"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "limesurvey channel options",
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "username", "password", "survey_id"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "RemoteControl endpoint, e.g. https://ls.example.com/index.php/admin/remotecontrol",
        },
        "username": {
            "type": "string",
            "minLength": 1,
            "description": "RemoteControl 2 user (a LimeSurvey account allowed to use the API)",
        },
        "password": {
            "type": "string",
            "minLength": 1,
            "description": "that user's password, from the environment: ${LIMESURVEY_PASSWORD}",
        },
        "auth_plugin": {
            "type": "string",
            "default": "Authdb",
            "description": "authentication plugin for get_session_key: Authdb, or e.g. AuthLDAP",
        },
        "survey_id": {
            "type": "integer",
            "minimum": 1,
            "description": "id of the survey invitations are for (it needs a participants table)",
        },
        "correlation_attribute": {
            **_ATTRIBUTE,
            "description": "participant attribute holding qloop's correlation token "
            "(default: the mapping's participant.correlation_attribute)",
        },
        "incident_attribute": {
            **_ATTRIBUTE,
            "description": "participant attribute holding the incident key, for the "
            "invitation template ({ATTRIBUTE_N}) (default: the mapping's)",
        },
        "key_attribute": {
            **_ATTRIBUTE,
            "description": "participant attribute holding the idempotency key, so lookup() "
            "can answer (default: the mapping's; without one lookup is not supported)",
        },
        "language": {"type": "string", "description": "participant language (survey default)"},
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 5000,
            "default": 200,
            "description": "participants added, and answers read, per RemoteControl call",
        },
        "ascii_email_only": {
            "type": "boolean",
            "default": True,
            "description": "non-ASCII e-mail addresses are unreachable (LimeSurvey refuses them)",
        },
        "server_timezone": {
            "type": "string",
            "default": "UTC",
            "description": "IANA zone of the LimeSurvey server: its dates are naive local times",
        },
        **http_options_schema(),
    },
}


@dataclass(frozen=True)
class LimeSurveyOptions:
    """Validated options of one ``limesurvey`` channel (see :data:`OPTIONS_SCHEMA`)."""

    url: str
    username: str
    password: str
    survey_id: int
    correlation_attribute: str
    incident_attribute: str
    key_attribute: str | None
    auth_plugin: str = "Authdb"
    language: str | None = None
    batch_size: int = 200
    ascii_email_only: bool = True
    server_timezone: tzinfo = UTC
    rate: float = 0.0
    timeout: float = 30.0
    verify_tls: bool | str = True

    def __repr__(self) -> str:
        return (
            f"LimeSurveyOptions(url={self.url!r}, username={self.username!r}, password='***', "
            f"survey_id={self.survey_id})"
        )

    @property
    def attributes(self) -> tuple[str, ...]:
        """The participant attributes the channel writes and reads."""
        names = (self.correlation_attribute, self.incident_attribute, self.key_attribute)
        return tuple(dict.fromkeys(n for n in names if n))


def parse_options(
    name: str, options: Mapping[str, Any], mapping: Mapping[str, Any]
) -> LimeSurveyOptions:
    """Validate ``options``, fill defaults (attributes from ``mapping["participant"]``).

    Raises:
        ConfigError: every problem, each at ``channels.<name>.<option>``.
    """
    where = f"channels.{name}"
    validator = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    problems = [
        Problem(
            "",
            None,
            ".".join([where, *map(str, err.path)]),
            "value hidden" if "password" in map(str, err.path) else err.message,
        )
        for err in sorted(
            validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path))
        )
    ]
    if problems:
        msg = f"{where}: invalid limesurvey options"
        raise ConfigError(msg, problems)
    opts = dict(options)
    for key, spec in OPTIONS_SCHEMA["properties"].items():
        if "default" in spec:
            opts.setdefault(key, spec["default"])
    participant = mapping.get("participant") or {}
    attrs: dict[str, str | None] = {}
    for key in ("correlation_attribute", "incident_attribute", "key_attribute"):
        value = opts.get(key) or participant.get(key)
        if value is not None and not jsonschema.Draft202012Validator(_ATTRIBUTE).is_valid(value):
            msg = f"{where}.{key}: {value!r} is not a participant attribute (attribute_N)"
            raise ConfigError(msg)
        attrs[key] = value
    for key in ("correlation_attribute", "incident_attribute"):
        if not attrs[key]:
            msg = f"{where}.{key}: required (no default in the mapping's participant section)"
            raise ConfigError(msg)
    used = [a for a in attrs.values() if a]
    if len(set(used)) != len(used):
        msg = f"{where}: correlation_attribute, incident_attribute and key_attribute must differ"
        raise ConfigError(msg)
    try:
        zone: tzinfo = ZoneInfo(opts["server_timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"{where}.server_timezone: unknown time zone {opts['server_timezone']!r}"
        raise ConfigError(msg) from exc
    return LimeSurveyOptions(
        url=opts["url"],
        username=opts["username"],
        password=opts["password"],
        survey_id=int(opts["survey_id"]),
        correlation_attribute=str(attrs["correlation_attribute"]),
        incident_attribute=str(attrs["incident_attribute"]),
        key_attribute=attrs["key_attribute"],
        auth_plugin=opts["auth_plugin"],
        language=opts.get("language"),
        batch_size=int(opts["batch_size"]),
        ascii_email_only=bool(opts["ascii_email_only"]),
        server_timezone=zone,
        rate=float(opts["rate"]),
        timeout=float(opts["timeout"]),
        verify_tls=opts["verify_tls"],
    )
