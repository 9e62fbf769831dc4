"""Validate a qloop config file and build it: every problem, with its file, line and key.

Three passes, all run so that one report lists every problem:

1. the JSON Schema of the whole file (``config/qloop.schema.json``);
2. each source's and channel's type-specific options against the schema its
   connector type registered in :mod:`core.registry`;
3. cross-references and values JSON Schema cannot check (see :mod:`core.conf.checks`
   style helpers below): calendars, policies, channels and sources that are
   referenced must exist; durations, cron strings, time zones, holiday
   countries and working hours must parse.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError

import config
from core import registry
from core.conf.checks import reference_problems
from core.conf.loader import LineIndex, PathKey, config_error, interpolate, read_yaml
from core.conf.masking import is_secret_name, mask_text, secret_values
from core.conf.model import CHANNEL_COMMON, SOURCE_COMMON, AppConfig, build
from core.errors import ConfigError, Problem

_KINDS: tuple[tuple[str, registry.Kind, frozenset[str]], ...] = (
    ("sources", "source", SOURCE_COMMON),
    ("channels", "channel", CHANNEL_COMMON),
)
_NAME_RULE = "use letters, digits, '-' and '_' (at most 63, not starting with '-' or '_')"


@cache
def top_schema() -> dict[str, Any]:
    """The JSON Schema of the whole config file (``config/qloop.schema.json``)."""
    schema: dict[str, Any] = json.loads(config.path("qloop.schema.json").read_text("utf-8"))
    return schema


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _error_problems(err: ValidationError, index: LineIndex, prefix: PathKey,
                    is_secret: Callable[[PathKey], bool],
                    extra_known: frozenset[str] = frozenset()) -> list[Problem]:
    """Readable problems for one JSON Schema error, never quoting a secret."""
    path: PathKey = (*prefix, *err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        known = sorted(set(props) | extra_known)
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return [index.problem((*path, k), f"unknown key {k!r}{hint}") for k in err.instance
                if k not in props and not any(re.search(p, str(k)) for p in patterns)]
    if "propertyNames" in err.schema_path:
        return [index.problem((*path, err.instance),
                              f"name {_describe(err.instance)} is not allowed: {_NAME_RULE}")]
    secret = is_secret(path)
    if err.validator == "type":
        wanted = err.validator_value if isinstance(err.validator_value, list) else [
            err.validator_value]
        words = " or ".join(_article(str(w)) for w in wanted)
        got = "a secret value of another type" if secret else _describe(err.instance)
        return [index.problem(path, f"expected {words}, got {got}")]
    message = err.message
    if secret or isinstance(err.instance, dict | list):
        message = message.replace(repr(err.instance), "the value (hidden)" if secret else
                                  _describe(err.instance))
    return [index.problem(path, message)]


def _secret_checker(secret_paths: frozenset[PathKey]) -> Callable[[PathKey], bool]:
    def is_secret(path: PathKey) -> bool:
        return any(path[:n] in secret_paths or (n and is_secret_name(path[n - 1]))
                   for n in range(len(path) + 1))
    return is_secret


def schema_problems(data: Any, index: LineIndex,
                    secret_paths: frozenset[PathKey] = frozenset()) -> list[Problem]:
    """Check ``data`` against the top-level JSON Schema (not the connector types).

    Args:
        data: Interpolated config data.
        index: Its line index.
        secret_paths: Paths whose values must not be quoted.

    Returns:
        Every problem found (empty when valid).
    """
    if data is None:
        return [index.problem((), "the file is empty: expected a mapping of settings")]
    validator = jsonschema.Draft202012Validator(top_schema())
    is_secret = _secret_checker(secret_paths)
    out: list[Problem] = []
    for err in validator.iter_errors(data):
        out.extend(_error_problems(err, index, (), is_secret))
    return out


def connector_problems(data: Any, index: LineIndex,
                       secret_paths: frozenset[PathKey] = frozenset()) -> list[Problem]:
    """Check every source's and channel's type and type-specific options.

    The options are the connector's block minus its common keys, checked against
    ``core.registry.schemas(kind)[type]``; paths keep the block's prefix.

    Args:
        data: Interpolated config data.
        index: Its line index.
        secret_paths: Paths whose values must not be quoted.

    Returns:
        Every problem found (empty when valid).
    """
    if not isinstance(data, dict):
        return []
    is_secret = _secret_checker(secret_paths)
    out: list[Problem] = []
    for section, kind, common in _KINDS:
        blocks = data.get(section)
        if not isinstance(blocks, dict):
            continue
        schemas = registry.schemas(kind)
        for name, block in blocks.items():
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                continue
            prefix: PathKey = (section, name)
            type_name = block["type"]
            if type_name not in schemas:
                valid = ", ".join(registry.names(kind)) or "(none registered)"
                out.append(index.problem((*prefix, "type"),
                                         f"unknown {kind} type {type_name!r}; valid types: {valid}"))
                continue
            schema = schemas[type_name]
            options = {k: v for k, v in block.items() if k not in common}
            try:
                cls = jsonschema.validators.validator_for(
                    schema, default=jsonschema.Draft202012Validator)
                cls.check_schema(schema)
            except SchemaError as exc:
                out.append(index.problem((*prefix, "type"), (
                    f"connector type {type_name!r} has an invalid options schema "
                    f"(a bug in the connector): {exc.message}")))
                continue
            for err in cls(schema).iter_errors(options):
                out.extend(_error_problems(err, index, prefix, is_secret, common))
    return out


def validate(data: Any, index: LineIndex, *, secret_paths: frozenset[PathKey] = frozenset(),
             connector_types: bool = True) -> list[Problem]:
    """Every problem of interpolated config ``data``: schema, connector options, references.

    Args:
        data: Interpolated config data.
        index: Its line index.
        secret_paths: Paths whose values must not be quoted.
        connector_types: Also check connector types and their options against
            :mod:`core.registry` (False: only the top-level schema and references).

    Returns:
        Every problem found, unsorted and unscrubbed (see :func:`load_config`).
    """
    problems = schema_problems(data, index, secret_paths)
    if connector_types:
        problems += connector_problems(data, index, secret_paths)
    problems += reference_problems(data, index)
    return list(dict.fromkeys(problems))


def _secret_paths(data: Any, env_sources: Mapping[PathKey, tuple[str, ...]]) -> set[PathKey]:
    found = {p for p, names in env_sources.items() if any(is_secret_name(n) for n in names)}

    def walk(value: Any, path: PathKey) -> None:
        if path and is_secret_name(path[-1]):
            found.add(path)
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(data, ())
    return found


def load_config(path: Path | str, env: Mapping[str, str] | None = None, *,
                connector_types: bool = True) -> AppConfig:
    """Read, interpolate, validate and build a qloop config file.

    Args:
        path: The YAML file.
        env: Environment for ``${VAR}`` (default ``os.environ``).
        connector_types: Check connector types and options against the
            connectors registered in :mod:`core.registry` at call time (import
            the connectors first).

    Returns:
        The :class:`AppConfig`.

    Raises:
        ConfigError: ``"<file>: N problems"`` with every problem, sorted by
            line; no message quotes a secret value.
    """
    file = str(path)
    data, index, problems = read_yaml(path)
    if problems and data is None:
        raise config_error(file, problems)
    interp = interpolate(data, index, os.environ if env is None else env)
    problems += interp.problems
    data = interp.data
    secret_paths = frozenset(_secret_paths(data, interp.env_sources))
    problems += validate(data, index, secret_paths=secret_paths,
                         connector_types=connector_types)
    if problems:
        secrets = secret_values(data, secret_paths)
        secrets |= {v for n, v in interp.env_values.items() if is_secret_name(n)}
        scrubbed = [Problem(p.file, p.line, p.path, mask_text(p.message, secrets))
                    for p in dict.fromkeys(problems)]
        raise config_error(file, scrubbed)
    return build(data, Path(path), secret_paths)


def format_problems(err: ConfigError) -> str:
    """One line per problem, ``file:line: key.path: message``, for the CLI.

    Args:
        err: The error raised by :func:`load_config`.

    Returns:
        The lines joined by newlines (the error's message when it has no problems).
    """
    if not err.problems:
        return err.message
    return "\n".join(str(p) for p in err.problems)
