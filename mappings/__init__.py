"""Default field mappings, one ``<connector type>.yaml`` per source type (schema: core.mapping)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from core.errors import ConfigError


def available() -> list[str]:
    """Names of the bundled mappings (file names without ``.yaml``)."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load(name: str) -> dict[str, Any]:
    """Load the bundled mapping ``mappings/<name>.yaml``.

    Raises:
        ConfigError: no such mapping (the message lists the available ones),
            or the file is not a YAML mapping.
    """
    resource = resources.files(__name__) / f"{name}.yaml"
    if "/" in name or "\\" in name or not resource.is_file():
        msg = f"unknown mapping {name!r}; available: {', '.join(available()) or '(none)'}"
        raise ConfigError(msg)
    try:
        data = yaml.safe_load(resource.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = f"mappings/{name}.yaml is not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(data, dict):
        msg = f"mappings/{name}.yaml must hold a mapping at the top level"
        raise ConfigError(msg)
    return data
