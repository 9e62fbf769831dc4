"""Read a YAML config file keeping the line of every key, then interpolate ``${ENV}``.

:func:`load_yaml` composes PyYAML's node tree and builds plain Python data
from it (mappings with string keys, lists, scalars; YAML dates become ISO
strings so the data is JSON-like) while recording, for every mapping key and
sequence item, the 1-based line it starts on. :class:`LineIndex` answers
"which line is ``("policies", "default", "response", "P4")`` on?" and falls
back to the nearest existing parent for keys that are missing.

:func:`interpolate` then substitutes environment variables in string values:
``${VAR}``, ``${VAR:-default}`` (default used when VAR is unset or empty;
it may be empty) and ``$$`` for a literal dollar. A plain (unquoted) scalar
that is exactly one reference is re-typed as YAML would type the result, so
``port: ${PORT:-5432}`` is an int and ``redis_url: ${REDIS_URL:-}`` is null.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from core.errors import ConfigError, Problem

PathKey = tuple[str | int, ...]
"""A JSON path: mapping keys (str) and sequence indexes (int) from the root."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_PLAIN_NUMBER = re.compile(
    r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_MAX_NODES = 200_000
_REF = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\{))")


def dotted(path: Sequence[str | int]) -> str:
    """Render a JSON path as ``policies.default.response.P4`` / ``survey.channels[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LineIndex:
    """Line numbers (1-based) of every mapping key and sequence item of a document."""

    file: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    plain: set[PathKey] = field(default_factory=set)
    """Paths of scalars written plain (unquoted, not a block scalar)."""

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest existing parent when it is missing."""
        key = tuple(path)
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A :class:`Problem` at ``path`` of this file."""
        return Problem(self.file, self.line(path), dotted(path), message)


class _Builder:
    """Walks a composed node tree into plain data, recording lines and problems."""

    def __init__(self, loader: yaml.SafeLoader, index: LineIndex) -> None:
        self.loader = loader
        self.index = index
        self.problems: list[Problem] = []
        self.count = 0
        self.stack: set[int] = set()

    def build(self, node: Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            msg = f"document too large (more than {_MAX_NODES} values after alias expansion)"
            raise _TooLarge(msg)
        if id(node) in self.stack:
            self.problems.append(self.index.problem(path, "recursive alias"))
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        self.stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                out: list[Any] = []
                for i, item in enumerate(node.value):
                    self.index.lines[(*path, i)] = item.start_mark.line + 1
                    out.append(self.build(item, (*path, i)))
                return out
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
        finally:
            self.stack.discard(id(node))
        return None  # pragma: no cover - PyYAML has no other node kind

    def _scalar(self, node: ScalarNode, path: PathKey) -> Any:
        if node.style is None:
            self.index.plain.add(path)
        try:
            value = self.loader.construct_object(node, deep=True)
        except ValueError:
            if node.tag == _TIMESTAMP_TAG:  # e.g. 2026-02-30: kept as text, checked as a date
                return node.value
            self.problems.append(self.index.problem(path, "invalid value"))
            return node.value
        except (yaml.YAMLError, TypeError) as exc:
            why = getattr(exc, "problem", None) or type(exc).__name__
            self.problems.append(self.index.problem(path, f"invalid value: {why}"))
            return node.value
        return _jsonish(value)

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges = [v for k, v in node.value if k.tag == _MERGE_TAG]
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for src in reversed(sources):  # earlier merged mappings win
                if not isinstance(src, MappingNode) or id(src) in self.stack:
                    self.problems.append(self.index.problem(path, "'<<' must merge mappings"))
                    continue
                out.update(self.build(src, path))
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                self.problems.append(
                    Problem(self.index.file, line, dotted(path), "keys must be plain names")
                )
                continue
            key = str(key_node.value)
            if key in seen:
                msg = f"duplicate key {key!r} (first at line {seen[key]})"
                self.problems.append(Problem(self.index.file, line, dotted((*path, key)), msg))
            seen[key] = line
            self.index.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out


class _TooLarge(Exception):
    pass


def _jsonish(value: Any) -> Any:
    """YAML timestamps become ISO strings; everything else is kept."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A YAML syntax error at its line, without quoting the text (it may hold a secret)."""
    problem, context = exc.problem or "cannot parse", exc.context
    mark, ctx = exc.problem_mark, exc.context_mark
    if ctx is not None and (mark is None or "end of stream" in problem):
        mark, ctx = ctx, None  # an unclosed quote or bracket: point at where it starts
    msg = f"YAML syntax error: {problem}"
    if context:
        where = f" at line {ctx.line + 1}" if ctx is not None else ""
        msg += f" ({context}{where})"
    return Problem(file, mark.line + 1 if mark is not None else None, "", msg)


def read_yaml(path: Path | str) -> tuple[Any, LineIndex, list[Problem]]:
    """Parse ``path``; return data, line index and the problems found (not raised)."""
    file = str(path)
    index = LineIndex(file)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, index, [Problem(file, None, "", f"cannot read the file: {why}")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, index, []
        index.lines[()] = node.start_mark.line + 1
        builder = _Builder(loader, index)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        return None, index, [_syntax_problem(file, exc)]
    except yaml.YAMLError as exc:
        return None, index, [Problem(file, None, "", f"YAML error: {type(exc).__name__}")]
    except _TooLarge as exc:
        return None, index, [Problem(file, None, "", str(exc))]
    finally:
        loader.dispose()
    return data, index, builder.problems


def load_yaml(path: Path | str) -> tuple[Any, LineIndex]:
    """Parse a YAML file keeping the line of every key and sequence item.

    Args:
        path: The YAML file.

    Returns:
        The data (dicts with str keys, lists, scalars; dates as ISO strings)
        and its :class:`LineIndex`. An empty file gives ``None``.

    Raises:
        ConfigError: The file cannot be read, is not valid YAML, or has
            duplicate keys (each problem names the file and line).
    """
    data, index, problems = read_yaml(path)
    if problems:
        raise config_error(str(path), problems)
    return data, index


def config_error(file: str, problems: Sequence[Problem]) -> ConfigError:
    """A :class:`ConfigError` for ``file`` holding ``problems`` sorted by line."""
    ordered = sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.path))
    count = len(ordered)
    return ConfigError(f"{file}: {count} problem{'' if count == 1 else 's'}", problems=ordered)


def format_problems(err: ConfigError) -> str:
    """One line per problem, ``file:line: key.path: message``, for the CLI.

    Args:
        err: A :class:`ConfigError`, e.g. from :func:`core.conf.load_config`.

    Returns:
        The lines joined by newlines (the error's message when it has no problems).
    """
    if not err.problems:
        return err.message
    return "\n".join(str(p) for p in err.problems)


@dataclass
class Interpolated:
    """The result of :func:`interpolate`."""

    data: Any
    env_sources: dict[PathKey, tuple[str, ...]]
    """Which environment variables each substituted value came from."""
    problems: list[Problem]
    env_values: dict[str, str] = field(default_factory=dict)
    """The values substituted, by variable name (to scrub secrets from messages)."""
    failed: set[PathKey] = field(default_factory=set)
    """Paths where a reference could not be substituted (already reported)."""


def interpolate(data: Any, index: LineIndex, env: Mapping[str, str]) -> Interpolated:
    """Substitute ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value.

    Args:
        data: Data from :func:`load_yaml` (not modified).
        index: Its line index (gives lines for problems and which scalars were plain).
        env: The environment to read variables from.

    Returns:
        An :class:`Interpolated` with the new data, the env variables behind
        each substituted path, and a problem for each missing variable
        without default or malformed reference.
    """
    result = Interpolated(None, {}, [])
    result.data = _walk(data, (), index, env, result)
    return result


def _walk(
    value: Any, path: PathKey, index: LineIndex, env: Mapping[str, str], out: Interpolated
) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, (*path, k), index, env, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*path, i), index, env, out) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    used: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(4):
            out.problems.append(
                index.problem(path, "malformed variable reference: use ${NAME} or ${NAME:-default}")
            )
            out.failed.add(path)
            return m.group(0)
        name, default = m.group(2), m.group(3)
        used.append(name)
        current = env.get(name)
        if current is not None and (current != "" or default is None):
            out.env_values[name] = current
            return current
        if default is not None:
            return default
        out.problems.append(
            index.problem(path, f"environment variable {name} is not set (and has no default)")
        )
        out.failed.add(path)
        return ""

    text = _REF.sub(sub, value)
    if used:
        out.env_sources[path] = tuple(dict.fromkeys(used))
    whole = _REF.fullmatch(value)
    if whole and whole.group(2) and path in index.plain:
        return retype(text)
    return text


def retype(text: str) -> Any:
    """Type ``text`` as YAML types a plain scalar (int, float, bool, null, str).

    Unlike a literal in the file, an environment value is not retyped into a
    base-8/base-16 or sexagesimal number (``0042`` stays the string ``"0042"``).
    """
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        if tag == _STR_TAG or (tag in _NUMBER_TAGS and not _PLAIN_NUMBER.fullmatch(text)):
            return text
        return _jsonish(loader.construct_object(ScalarNode(tag, text), deep=True))
    except (yaml.YAMLError, ValueError, TypeError):
        return text
    finally:
        loader.dispose()
