"""A quick yes/no check of a document against one of the channel's JSON Schemas.

:mod:`jsonschema` builds a list of errors with their paths for every
document, which is most of the cost of reading a webhook delivery, although
almost every delivery is valid. :func:`compile_check` turns a schema into
plain Python closures that only answer whether a document is valid, once
per schema; :func:`connectors.webhook.payloads.validate` asks it first and
asks :mod:`jsonschema` only when the answer is no, so the errors (their
paths and messages) are still :mod:`jsonschema`'s own.

Only the keywords the published schemas use are understood, each with
:mod:`jsonschema`'s meaning for draft 2020-12 (the same type checks, ``len``
of a string, ``re.search`` for ``pattern``, ``if``/``then``/``else``, local
``$ref``). A schema with any other keyword is not compiled
(:func:`compile_check` returns None) and every document goes to
:mod:`jsonschema`.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
"""Keywords that never make a document invalid (``$defs`` is reached through ``$ref``)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


_KEYWORDS = {
    name: "_k_" + name.lstrip("$")
    for name in (
        "type",
        "enum",
        "const",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "maxLength",
        "minLength",
        "pattern",
        "items",
        "maxItems",
        "minItems",
        "required",
        "properties",
        "additionalProperties",
    )
}
"""The keywords understood, and the method that compiles each (``then`` and ``else``
go with ``if``)."""


class Unsupported(Exception):
    """The schema uses something this checker does not understand."""


def compile_check(schema: Any) -> Check | None:
    """A function telling whether a document is valid against ``schema``; None when the
    schema uses a keyword (or a reference) this module does not understand."""
    try:
        return _Compiler(schema).compile(schema)
    except Unsupported:
        return None


def _all(checks: Sequence[Check]) -> Check:
    if not checks:
        return lambda _: True
    if len(checks) == 1:
        return checks[0]
    found = tuple(checks)

    def check(value: Any) -> bool:
        return all(one(value) for one in found)

    return check


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda _: True
        if schema is False:
            return lambda _: False
        if not isinstance(schema, Mapping):
            raise Unsupported(repr(schema))
        if "$id" in schema and schema is not self.root:
            msg = "$id below the root"
            raise Unsupported(msg)  # references would resolve elsewhere
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("then", "else"):
                continue
            if keyword not in _KEYWORDS:
                raise Unsupported(keyword)
            checks.append(getattr(self, _KEYWORDS[keyword])(value, schema))
        return _all(checks)

    # -- any instance --------------------------------------------------------------

    def _k_type(self, value: Any, _: Mapping[str, Any]) -> Check:
        names = [value] if isinstance(value, str) else list(value)
        if any(n not in _TYPES for n in names):
            msg = f"type {value!r}"
            raise Unsupported(msg)
        tests = tuple(_TYPES[n] for n in names)
        if len(tests) == 1:
            return tests[0]
        return lambda v: any(t(v) for t in tests)

    def _k_enum(self, value: Any, _: Mapping[str, Any]) -> Check:
        if not all(isinstance(e, str) for e in value):
            msg = "enum of other than strings"
            raise Unsupported(msg)  # equality of 1, 1.0 and True
        allowed = frozenset(value)
        return lambda v: isinstance(v, str) and v in allowed

    def _k_const(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return self._k_enum([value], schema)

    def _k_ref(self, value: Any, _: Mapping[str, Any]) -> Check:
        if not isinstance(value, str) or not value.startswith("#"):
            msg = f"$ref {value!r}"
            raise Unsupported(msg)
        found = self.refs.get(value)
        if found is not None:
            return found
        target: list[Check] = []

        def check(v: Any) -> bool:
            return target[0](v)

        self.refs[value] = check  # a schema that refers to itself finds it
        target.append(self.compile(self._resolve(value)))
        return check

    def _resolve(self, ref: str) -> Any:
        node = self.root
        pointer = ref[1:]
        if pointer and not pointer.startswith("/"):
            msg = f"$ref {ref!r}"
            raise Unsupported(msg)  # an anchor
        for part in pointer.split("/")[1:]:
            if "%" in part:
                msg = f"$ref {ref!r}"
                raise Unsupported(msg)
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                msg = f"$ref {ref!r}"
                raise Unsupported(msg)
        return node

    def _k_allOf(self, value: Any, _: Mapping[str, Any]) -> Check:
        return _all([self.compile(s) for s in value])

    def _k_anyOf(self, value: Any, _: Mapping[str, Any]) -> Check:
        subs = tuple(self.compile(s) for s in value)
        return lambda v: any(s(v) for s in subs)

    def _k_oneOf(self, value: Any, _: Mapping[str, Any]) -> Check:
        subs = tuple(self.compile(s) for s in value)
        return lambda v: sum(1 for s in subs if s(v)) == 1

    def _k_not(self, value: Any, _: Mapping[str, Any]) -> Check:
        sub = self.compile(value)
        return lambda v: not sub(v)

    def _k_if(self, value: Any, schema: Mapping[str, Any]) -> Check:
        test = self.compile(value)
        then = self.compile(schema.get("then", True))
        otherwise = self.compile(schema.get("else", True))
        return lambda v: then(v) if test(v) else otherwise(v)

    # -- strings -------------------------------------------------------------------

    def _k_maxLength(self, value: Any, _: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) <= value

    def _k_minLength(self, value: Any, _: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= value

    def _k_pattern(self, value: Any, _: Mapping[str, Any]) -> Check:
        search = re.compile(value).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    # -- arrays --------------------------------------------------------------------

    def _k_items(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "prefixItems" in schema:
            msg = "prefixItems"
            raise Unsupported(msg)
        each = self.compile(value)
        return lambda v: not isinstance(v, list) or all(each(item) for item in v)

    def _k_maxItems(self, value: Any, _: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) <= value

    def _k_minItems(self, value: Any, _: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) >= value

    # -- objects -------------------------------------------------------------------

    def _k_required(self, value: Any, _: Mapping[str, Any]) -> Check:
        names = tuple(value)
        return lambda v: not isinstance(v, dict) or all(n in v for n in names)

    def _k_properties(self, value: Any, _: Mapping[str, Any]) -> Check:
        subs = {name: self.compile(sub) for name, sub in value.items()}
        return lambda v: (
            not isinstance(v, dict)
            or all(subs[key](item) for key, item in v.items() if key in subs)
        )

    def _k_additionalProperties(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "patternProperties" in schema:
            msg = "patternProperties"
            raise Unsupported(msg)
        known = frozenset(schema.get("properties", {}))
        if value is True:
            return lambda _: True
        if value is not False:
            each = self.compile(value)
            return lambda v: (
                not isinstance(v, dict)
                or all(each(item) for key, item in v.items() if key not in known)
            )
        return lambda v: not isinstance(v, dict) or known.issuperset(v)
