"""Typed reads of a connector's options, with the defaults its JSON Schema declares.

The options are validated once, against the type's schema, when the
configuration is loaded (``qloop validate`` and every start-up). A source
then reads them through :class:`Options`, which fills in the schema's
``default`` values and returns typed values; a value of the wrong type
(options built by hand in code) is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.errors import ConfigError, InputError
from core.timeutil import parse_duration, parse_instant


def schema_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``default`` of every top-level property of ``schema`` that declares one."""
    props = schema.get("properties") or {}
    return {name: spec["default"] for name, spec in props.items() if "default" in spec}


class Options:
    """A source's options over its schema's defaults; ``where`` prefixes every error."""

    def __init__(self, where: str, options: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
        self.where = where
        self.values: dict[str, Any] = {**schema_defaults(schema), **dict(options)}

    def _fail(self, key: str, wanted: str) -> ConfigError:
        value = self.values.get(key)
        msg = f"{self.where}.{key}: expected {wanted}, got {value!r}"
        return ConfigError(msg)

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number")
        return float(value)

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def seconds(self, key: str, default: str | int | None = None) -> int:
        """A duration (``2m``, ``30s``, or seconds as an integer), in whole seconds."""
        value = self.values.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return parse_duration(str(value), allow_business_days=False).seconds
        except (InputError, ValueError):
            raise self._fail(key, "a duration such as 2m or 30s") from None

    def instant(self, key: str) -> datetime | None:
        """An ISO 8601 instant with its zone (None when the option is not set)."""
        if not self.has(key):
            return None
        try:
            return parse_instant(str(self.values[key]))
        except InputError:
            raise self._fail(key, "an ISO 8601 instant with its zone") from None

    def section(self, key: str) -> Options:
        """A nested object option as :class:`Options` (empty when absent)."""
        value = self.values.get(key) or {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "an object")
        return Options(f"{self.where}.{key}", value, {})

    def strings(self, key: str) -> list[str]:
        value = self.values.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return list(value)
