"""``qloop schema``: the reference of every connector type's options, from their JSON Schemas.

``qloop schema TYPE`` prints one type's options (name, type, required,
default, allowed values, description) as Markdown, or its JSON Schema with
``--json``; ``qloop schema`` alone prints the whole reference: the top-level
keys of the config file (``config/qloop.schema.json``) and every registered
type. ``docs/connectors.md`` is that output (a test keeps it in sync:
regenerate it with ``qloop schema > docs/connectors.md``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from core import registry
from core.conf import top_schema
from core.errors import ConfigError

Row = tuple[str, str, str, str, str, str]
"""Option, type, required, default, allowed values, description."""

KINDS: tuple[registry.Kind, ...] = ("source", "channel")
HEADER = ("Option", "Type", "Required", "Default", "Allowed", "Description")


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with a local ``$ref`` merged in (the referring schema's own keys win)."""
    out = dict(schema)
    ref = out.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        out = {**_resolve(target, root), **out}
    return out


def _code(value: Any) -> str:
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def _type(prop: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    if isinstance(kind, list):
        text = " or ".join(map(str, kind))
    elif kind:
        text = str(kind)
    elif "enum" in prop:
        text = "string" if all(isinstance(v, str) for v in prop["enum"]) else "value"
    elif "oneOf" in prop or "anyOf" in prop:
        text = "one of the forms below"
    else:
        text = "any"
    items = _resolve(prop["items"], root) if isinstance(prop.get("items"), Mapping) else {}
    if text == "array" and isinstance(items.get("type"), str):
        text = f"array of {items['type']}"
    return text


def _allowed(prop: Mapping[str, Any]) -> str:
    parts: list[str] = []
    enum = prop.get("enum")
    items = prop.get("items")
    if enum is None and isinstance(items, Mapping):
        enum = items.get("enum")
    if enum is not None:
        parts.append(", ".join(_code(v) for v in enum))
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = ">" if "exclusiveMinimum" in prop else "≥"
        right = "<" if "exclusiveMaximum" in prop else "≤"
        if low is not None and high is not None:
            parts.append(f"{low} to {high}")
        elif low is not None:
            parts.append(f"{left} {low}")
        else:
            parts.append(f"{right} {high}")
    if "minLength" in prop and prop["minLength"] > 1:
        parts.append(f"at least {prop['minLength']} characters")
    if "minItems" in prop:
        parts.append(f"at least {prop['minItems']} item(s)")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(
    schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str = "", note: str = ""
) -> Iterator[Row]:
    """One row per property, nested objects and each form of a ``oneOf`` flattened."""
    required = set(schema.get("required", ()))
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(raw, root)
        path = f"{prefix}{name}"
        desc = str(prop.get("description", ""))
        default = _code(prop["default"]) if "default" in prop else ""
        yield (
            f"`{path}`",
            _type(prop, root),
            "yes" if name in required else "",
            default,
            _allowed(prop),
            f"{note} {desc}".strip(),
        )
        if "properties" in prop:
            yield from _rows(prop, root, f"{path}.")
        extra = prop.get("additionalProperties")
        if isinstance(extra, Mapping):  # a mapping of named blocks: calendars.<name>...
            block = _resolve(extra, root)
            if "properties" in block:
                yield from _rows(block, root, f"{path}.<name>.")
        items = prop.get("items")
        if isinstance(items, Mapping) and "properties" in _resolve(items, root):
            yield from _rows(_resolve(items, root), root, f"{path}[].")
        for word in ("oneOf", "anyOf"):
            for i, form in enumerate(prop.get(word, ()), 1):
                form = _resolve(form, root)
                if "properties" in form:
                    yield from _rows(form, root, f"{path}.", f"(form {i} of `{path}`)")


def _alternatives(schema: Mapping[str, Any]) -> list[str]:
    """Readable lines for a schema-level ``oneOf``/``anyOf`` of required keys."""
    lines = []
    for word, lead in (("oneOf", "Give exactly one of"), ("anyOf", "Give at least one of")):
        forms = [
            " + ".join(f"`{k}`" for k in form.get("required", ()))
            for form in schema.get(word, ())
            if isinstance(form, Mapping) and form.get("required")
        ]
        if forms:
            lines.append(f"{lead}: " + " | ".join(forms) + ".")
    return lines


def _table(rows: Sequence[Row]) -> list[str]:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def type_markdown(kind: registry.Kind, name: str, level: int = 2) -> str:
    """The Markdown reference of connector type ``name`` of ``kind``."""
    ctype = registry.get(kind, name)
    schema = ctype.options_schema
    head = "#" * level
    lines = [f"{head} `{name}` ({kind})", ""]
    if schema.get("description"):
        lines += [str(schema["description"]), ""]
    mapping = f"`mappings/{ctype.mapping}.yaml`" if ctype.mapping else "none"
    lines += [
        f"Options of `{kind}s.<name>` with `type: {name}`, beside the keys every {kind} "
        f"has (`{kind}s.<name>.*` in the top-level keys). Default field mapping: {mapping}.",
        "",
    ]
    lines += [*_alternatives(schema)]
    if lines[-1] != "":
        lines.append("")
    lines += _table(list(_rows(schema, schema)))
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The whole reference: top-level config keys, then every connector type."""
    root = top_schema()
    lines = [
        "# qloop configuration reference",
        "",
        "<!-- Generated by `qloop schema` from config/qloop.schema.json and each connector",
        "     type's options schema; do not edit: run `qloop schema > docs/connectors.md`. -->",
        "",
        "One YAML file configures qloop; `qloop validate FILE` checks it against these",
        "schemas and names the file, line and key of every problem. `qloop schema TYPE`",
        "prints one connector type's options, `qloop schema TYPE --json` its JSON Schema.",
        "Values can come from the environment: `${VAR}` or `${VAR:-default}`; secrets",
        "(tokens, passwords) should. Durations are `30s`, `15m`, `4h`, `2d` (elapsed) or",
        "`3bd` (business days on the policy's calendar): SLA targets may be business time,",
        "the callback window (`callback.within`) and other waits are elapsed time.",
        "",
        "## Top-level keys",
        "",
        *_table(list(_rows(root, root))),
        "",
    ]
    for kind in KINDS:
        for name in registry.names(kind):
            lines.append(type_markdown(kind, name))
    return "\n".join(lines).rstrip("\n") + "\n"


def _kinds_of(name: str, kind: str | None) -> list[registry.Kind]:
    found = [k for k in KINDS if name in registry.names(k) and kind in (None, k)]
    if not found:
        valid = "; ".join(f"{k}s: {', '.join(registry.names(k))}" for k in KINDS)
        what = f" for a {kind}" if kind else ""
        msg = f"unknown connector type {name!r}{what}; valid types: {valid}"
        raise ConfigError(msg)
    return found


def cmd_schema(args: argparse.Namespace) -> int:
    if args.type is None:
        if args.json:
            doc = {
                "config": top_schema(),
                **{f"{k}s": dict(registry.schemas(k)) for k in KINDS},
            }
            print(json.dumps(doc, indent=2, ensure_ascii=False))
        else:
            print(reference_markdown(), end="")
        return 0
    kinds = _kinds_of(args.type, args.kind)
    if args.json:
        docs = {k: dict(registry.get(k, args.type).options_schema) for k in kinds}
        print(json.dumps(docs[kinds[0]] if len(kinds) == 1 else docs, indent=2, ensure_ascii=False))
    else:
        print("\n".join(type_markdown(k, args.type, level=1) for k in kinds), end="")
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop schema`` to the ``qloop`` command."""
    del with_config  # the reference does not depend on a config file
    text = "print the options of a connector type (or the whole config reference)"
    p = sub.add_parser("schema", help=text, description=text)
    p.add_argument(
        "type",
        nargs="?",
        help="a connector type, e.g. jira_sm (default: the whole reference, as docs/connectors.md)",
    )
    p.add_argument(
        "--kind",
        choices=KINDS,
        default=None,
        help="source or channel, for a type that is both (default: both)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the JSON Schema instead of Markdown (default off)",
    )
    p.set_defaults(func=cmd_schema)
