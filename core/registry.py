"""Connector types by name: YAML ``type: sandbox`` resolves here.

Connectors register a factory and the JSON Schema of their options;
the config validator uses the schemas, the runtime uses the factories.
An unknown type is an error that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from core.connector import Channel, ConnectorContext, Source
from core.errors import ConfigError

Kind = Literal["source", "channel"]
SourceFactory = Callable[[str, Mapping[str, Any], ConnectorContext], Source]
ChannelFactory = Callable[[str, Mapping[str, Any], ConnectorContext], Channel]


@dataclass(frozen=True)
class ConnectorType:
    kind: Kind
    name: str
    factory: Callable[[str, Mapping[str, Any], ConnectorContext], Any]
    options_schema: Mapping[str, Any]
    mapping: str | None = None
    """Name of the default mapping file in ``mappings/`` (without .yaml)."""


_TYPES: dict[tuple[Kind, str], ConnectorType] = {}


def register(
    kind: Kind,
    name: str,
    factory: Callable[[str, Mapping[str, Any], ConnectorContext], Any],
    options_schema: Mapping[str, Any],
    mapping: str | None = None,
) -> None:
    """Register a connector type; registering the same name twice replaces it."""
    if kind not in ("source", "channel"):
        msg = f"connector kind must be 'source' or 'channel', not {kind!r}"
        raise ValueError(msg)
    _TYPES[(kind, name)] = ConnectorType(kind, name, factory, options_schema, mapping)


def names(kind: Kind) -> list[str]:
    return sorted(n for (k, n) in _TYPES if k == kind)


def get(kind: Kind, name: str) -> ConnectorType:
    try:
        return _TYPES[(kind, name)]
    except KeyError:
        valid = ", ".join(names(kind)) or "(none registered)"
        msg = f"unknown {kind} type {name!r}; valid types: {valid}"
        raise ConfigError(msg) from None


def schemas(kind: Kind) -> dict[str, Mapping[str, Any]]:
    """Options schema per registered type of ``kind``."""
    return {n: t.options_schema for (k, n), t in _TYPES.items() if k == kind}
