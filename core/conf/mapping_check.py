"""``mapping:`` blocks checked against their connector type's mapping schema.

A source's or channel's ``mapping:`` overrides its type's default mapping
(``mappings/<type>.yaml``, deep-merged by :func:`core.mapping.merge_mapping`).
A misspelt key there (``scroe``, ``confirmd``) used to be merged in and never
read: the default silently won. Each mapping kind has a JSON Schema,
``config/schemas/mapping-<name>.schema.json`` (the incident schema serves
every source type whose mapping has a ``record`` section); the merged
mapping is checked against it, and every problem names the config file,
the line and the key. The bundled ``mappings/<name>.yaml`` of the types in
use are checked the same way, with their own file and lines.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

import config
import mappings
from core import registry
from core.conf.loader import LineIndex, PathKey, read_yaml
from core.errors import ConfigError, Problem

_SECTIONS: tuple[tuple[str, registry.Kind], ...] = (("sources", "source"), ("channels", "channel"))


@cache
def _schema_file(kind: str) -> dict[str, Any] | None:
    try:
        path = config.path(f"schemas/mapping-{kind}.schema.json")
    except FileNotFoundError:
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def mapping_schema(name: str) -> dict[str, Any] | None:
    """The JSON Schema of mapping ``name`` (None: no schema, the mapping is not checked)."""
    own = _schema_file(name)
    if own is not None:
        return own
    try:
        default = mappings.load(name)
    except ConfigError:
        return None
    return _schema_file("incident") if "record" in default else None


def _known(schema: Mapping[str, Any]) -> list[str]:
    return sorted(str(k) for k in schema.get("properties", {}))


def _problems(err: ValidationError, index: LineIndex, prefix: PathKey, what: str) -> list[Problem]:
    path: PathKey = (*prefix, *err.absolute_path)
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        props = schema.get("properties", {})
        known = _known(schema)
        out = []
        for key in err.instance:
            if key in props:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = f" (known keys: {', '.join(known)})" if known else ""
            out.append(index.problem((*path, key), f"unknown key {key!r} in {what}{hint}{listed}"))
        return out
    return [index.problem(path, f"{what}: {err.message}")]


def check_mapping(
    doc: Any, name: str, index: LineIndex, prefix: PathKey = (), what: str = ""
) -> list[Problem]:
    """Problems of mapping document ``doc`` (mapping kind ``name``) at ``prefix`` of ``index``."""
    schema = mapping_schema(name)
    if schema is None:
        return []
    what = what or f"the {name} mapping"
    validator = jsonschema.Draft202012Validator(schema)
    return [
        p
        for err in validator.iter_errors(doc)
        if err.instance is not None  # null removes a default key: only its name is checked
        for p in _problems(err, index, prefix, what)
    ]


def _overlay(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged over ``base`` as :func:`core.mapping.merge_mapping` does,
    except that a null stays (as None) so that its key's name is checked too."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = value
    return out


@cache
def _bundled(name: str, mtime: float) -> tuple[Problem, ...]:
    path = Path(str(resources.files("mappings") / f"{name}.yaml"))
    doc, index, problems = read_yaml(path)
    if doc is None:
        return tuple(problems)
    return (*problems, *check_mapping(doc, name, index))


def bundled_problems(name: str) -> list[Problem]:
    """Problems of the shipped ``mappings/<name>.yaml`` (none when it is as shipped)."""
    path = Path(str(resources.files("mappings") / f"{name}.yaml"))
    if not path.is_file():
        return []
    return list(_bundled(name, path.stat().st_mtime))


def mapping_problems(data: Any, index: LineIndex) -> list[Problem]:
    """Problems of every ``mapping:`` block of config ``data`` and of the mappings they extend.

    Types not registered are left to the connector check, which reports them.
    """
    if not isinstance(data, dict):
        return []
    out: list[Problem] = []
    used: set[str] = set()
    for section, kind in _SECTIONS:
        blocks = data.get(section)
        if not isinstance(blocks, dict):
            continue
        for name, block in blocks.items():
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                continue
            try:
                ctype = registry.get(kind, block["type"])
            except ConfigError:
                continue
            override = block.get("mapping")
            prefix: PathKey = (section, name, "mapping")
            if not ctype.mapping:
                if override:
                    msg = f"type {ctype.name!r} has no mapping: this block would not be read"
                    out.append(index.problem(prefix, msg))
                continue
            used.add(ctype.mapping)
            if not isinstance(override, dict) or not override:
                continue
            try:
                merged = _overlay(mappings.load(ctype.mapping), override)
            except ConfigError as exc:
                out.append(index.problem(prefix, str(exc)))
                continue
            what = f"the {ctype.mapping} mapping (mappings/{ctype.mapping}.yaml)"
            out += check_mapping(merged, ctype.mapping, index, prefix, what)
    for name in sorted(used):
        out += bundled_problems(name)
    return out
