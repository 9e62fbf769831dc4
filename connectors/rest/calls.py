"""One configured HTTP call of the ``rest`` source: method, path, parameters, body, templates.

Every string of a call's ``path``, ``params``, ``json`` and ``form`` may hold
placeholders ``{name}`` (``{since}``, ``{id}``, ``{ref}``, ``{marker}``…),
filled in when the call is made; ``{{`` and ``}}`` are literal braces. A
``form`` field whose value is an object or list is sent as its JSON text
(a tool that takes a JSON document in one form field, such as iTop's
``json_data``). A placeholder with no value is a :class:`ConfigError`
naming the option and the placeholder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.http import HttpService
from connectors.kit.paths import read
from core.errors import ConfigError, FatalError

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_text(text: str, values: Mapping[str, Any], where: str) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` (``{{``/``}}``: braces)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            msg = f"{where}: no value for placeholder {{{name}}} here (known: {known})"
            raise ConfigError(msg)
        return str(values[name])

    return _PLACEHOLDER.sub(one, text)


def render(node: Any, values: Mapping[str, Any], where: str) -> Any:
    """Every string inside ``node`` rendered (objects and lists walked)."""
    if isinstance(node, str):
        return render_text(node, values, where)
    if isinstance(node, Mapping):
        return {str(k): render(v, values, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [render(v, values, f"{where}.{i}") for i, v in enumerate(node)]
    return node


def placeholders(node: Any) -> set[str]:
    """The placeholder names used anywhere in ``node``."""
    if isinstance(node, str):
        return {m.group(1) for m in _PLACEHOLDER.finditer(node) if m.group(1)}
    if isinstance(node, Mapping):
        return set().union(*(placeholders(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(placeholders(v) for v in node)) if node else set()
    return set()


@dataclass(frozen=True)
class Call:
    """A call as configured (see the module docstring); ``where`` names its option."""

    where: str
    path: str
    method: str = "GET"
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, spec: Mapping[str, Any], where: str) -> Call:
        if not isinstance(spec.get("path"), str):
            msg = f"{where}.path: the call needs a path"
            raise ConfigError(msg)
        return cls(
            where,
            spec["path"],
            str(spec.get("method") or "GET").upper(),
            dict(spec.get("params") or {}),
            spec.get("json"),
            dict(spec["form"]) if spec.get("form") is not None else None,
        )

    def uses(self) -> set[str]:
        return placeholders([self.path, dict(self.params), self.json, self.form or {}])

    def parts(
        self, values: Mapping[str, Any], extra_params: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(path, query parameters, body keyword arguments)`` with ``values`` filled in."""
        path = render_text(self.path, values, f"{self.where}.path")
        params = {**render(dict(self.params), values, f"{self.where}.params")}
        params.update(extra_params or {})
        body: dict[str, Any] = {}
        if self.json is not None:
            body["json"] = render(self.json, values, f"{self.where}.json")
        if self.form is not None:
            form = render(dict(self.form), values, f"{self.where}.form")
            body["data"] = {
                k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                for k, v in form.items()
            }
        return path, {k: v for k, v in params.items() if v is not None}, body

    def send(
        self,
        http: HttpService,
        values: Mapping[str, Any],
        *,
        extra_params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        path, params, body = self.parts(values, extra_params)
        return http.request(self.method, path, params=params, idempotent=idempotent, **body)


def answer(
    http: HttpService, response: httpx.Response, call: Call, errors: Mapping[str, Any] | None
) -> Any:
    """The JSON of ``response`` (a :class:`RetriableError` when it is not JSON).

    ``errors`` (the source's ``errors`` option) names a status field of tools
    that answer errors with HTTP 200 (iTop's ``code``): a value not in ``ok``
    is a :class:`FatalError` with the tool's message.
    """
    doc = http.json_of(response, call.method, call.path)
    if errors:
        status = read(doc, str(errors["path"]))
        if str(status) not in {str(v) for v in errors.get("ok") or [0]}:
            text = read(doc, str(errors.get("message") or "message"))
            msg = f"{http.name}: {call.where}: the tool answered {status!r}: {text}"
            raise FatalError(msg, connector=http.name)
    return doc


def records_at(doc: Any, path: str, where: str) -> list[dict[str, Any]]:
    """The records at ``path``: a list, or an object's values (a tool keying them by id).

    Nothing there is an empty page; anything else is a :class:`FatalError`
    naming the option, so a wrong path is never read as "no records".
    """
    found = read(doc, path)
    if found is None:
        return []
    items = list(found.values()) if isinstance(found, dict) else found
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        msg = (
            f"{where}: {path!r} leads to {type(found).__name__}, not a list of records "
            "(or an object of records)"
        )
        raise FatalError(msg)
    return items
