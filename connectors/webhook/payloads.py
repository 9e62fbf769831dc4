"""The JSON the webhook channel exchanges: tasks out, outcomes in.

Both shapes are published JSON Schemas shipped in the ``config`` package
(``config/webhook/task.schema.json`` and ``outcome.schema.json``) and are
checked at both ends: qloop validates every task before signing it and
every outcome delivery before mapping it, and the test call centre does
the same. Validation errors name the JSON path (``$.data.outcomes[2].kind``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema

from connectors.webhook.fastcheck import Check, compile_check
from core.errors import InputError
from core.limits import check_outcome
from core.mapping import get_path
from core.records import Contact, OutboundMessage, Outcome
from core.timeutil import parse_instant, to_utc

SchemaName = Literal["task", "outcome"]
SINGLE = "outcome.reported"
BATCH = "outcome.batch"
_KIND_OF_OUTCOME = {"callback_attempt": "callback", "survey_answer": "survey"}


@cache
def schema(name: SchemaName) -> dict[str, Any]:
    """The published JSON Schema ``config/webhook/<name>.schema.json``."""
    resource = resources.files("config").joinpath("webhook", f"{name}.schema.json")
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator(name: SchemaName) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name))


@cache
def _quick_check(name: SchemaName) -> Check | None:
    return compile_check(schema(name))


def json_path(parts: Sequence[str | int]) -> str:
    """``$.data.outcomes[2].kind`` for the path parts of a validation error."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(name: SchemaName, doc: Any, where: str) -> None:
    """Check ``doc`` against schema ``name``.

    A valid document is recognised by the schema's compiled check
    (:mod:`connectors.webhook.fastcheck`); any other is read by
    :mod:`jsonschema`, which names the problems.

    Raises:
        InputError: listing each problem at its JSON path (``errors``
            holds ``(path, message)`` pairs); ``field`` is the first path.
    """
    quick = _quick_check(name)
    if quick is not None and quick(doc):
        return
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    found = [(json_path(list(e.absolute_path)), _short(e)) for e in errors]
    listed = "; ".join(f"{path}: {message}" for path, message in found[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    msg = f"{where}: invalid {name} payload: {listed}{more}"
    raise InputError(msg, field=found[0][0], errors=tuple(found))


def _short(err: jsonschema.ValidationError) -> str:
    message = err.message
    return message if len(message) <= 160 else message[:157] + "..."


def encode(doc: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(body: bytes, where: str) -> Any:
    """Parse a delivery's raw body."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        msg = f"{where}: the body is not UTF-8 JSON ({type(exc).__name__} at $)"
        raise InputError(msg, field="$") from None
    except RecursionError:
        msg = f"{where}: the body's JSON is nested too deeply to read"
        raise InputError(msg, field="$") from None


def utc_z(value: datetime) -> str:
    """``2026-10-05T03:04:05Z``: aware instants only, whole seconds."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_payload(
    message: OutboundMessage, now: datetime, mapping: Mapping[str, Any]
) -> dict[str, Any]:
    """The task envelope for ``message`` (see ``task.schema.json``), validated."""
    types = mapping.get("event_types") or {}
    scales = mapping.get("scale") or {}
    doc: dict[str, Any] = {
        "type": types.get(message.kind, f"qloop.{message.kind}.requested"),
        "timestamp": utc_z(now),
        "data": {
            "kind": message.kind,
            "idempotency_key": message.idempotency_key,
            "correlation_token": message.correlation_token,
            "incident": {
                "source": message.source,
                "external_id": message.incident_external_id,
                "key": message.incident_key,
                "title": message.title,
                "priority": message.priority,
                "service": message.service,
                "customer": message.customer,
            },
            "contact": {
                "name": message.contact.name,
                "phone": message.contact.phone,
                "email": message.contact.email,
            },
            "resolved_at": utc_z(message.resolved_at),
            "due_at": utc_z(message.due_at) if message.due_at else None,
            "answer_scale": [float(x) for x in scales.get(message.kind, (1, 5))],
        },
    }
    validate("task", doc, f"task {message.idempotency_key}")
    return doc


def reply_ref(reply: Any, mapping: Mapping[str, Any]) -> str | None:
    """The receiver's reference in its 2xx reply (``mapping["reply_ref"]`` paths), if any."""
    for path in mapping.get("reply_ref") or ():
        value = get_path(reply, path)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def outcomes_of(
    doc: Mapping[str, Any], webhook_id: str | None, mapping: Mapping[str, Any], where: str
) -> list[Outcome]:
    """The outcomes of a validated delivery or poll page.

    A single outcome (``outcome.reported``) is identified by ``webhook_id``
    (its own ``id`` when there is no webhook-id, as in a poll page); batch
    items by their ``id``.
    """
    if doc["type"] == SINGLE:
        item = doc["data"]
        event_id = webhook_id or item.get("id")
        if not event_id:
            msg = f"{where}: an outcome.reported without webhook-id needs data.id"
            raise InputError(msg, field="$.data.id")
        return [_outcome(item, event_id, mapping, where, "$.data")]
    return [
        _outcome(item, item["id"], mapping, where, f"$.data.outcomes[{n}]")
        for n, item in enumerate(doc["data"]["outcomes"])
    ]


def _outcome(
    item: Mapping[str, Any], event_id: str, mapping: Mapping[str, Any], where: str, path: str
) -> Outcome:
    try:
        occurred = parse_instant(item["occurred_at"]).astimezone(UTC)
    except InputError as exc:
        msg = f"{where}: {path}.occurred_at: {exc}"
        raise InputError(msg, field=f"{path}.occurred_at") from None
    scales = mapping.get("scale") or {}
    lo, hi = item.get("scale") or scales.get(_KIND_OF_OUTCOME[item["kind"]], (1, 5))
    if not lo < hi:
        msg = f"{where}: {path}.scale: min must be below max, got [{lo}, {hi}]"
        raise InputError(msg, field=f"{path}.scale")
    contact = item.get("contact")
    outcome = Outcome(
        provider_event_id=event_id,
        kind=item["kind"],
        occurred_at=occurred,
        correlation_token=item.get("correlation_token"),
        provider_ref=item.get("provider_ref"),
        contact=Contact(contact.get("name"), contact.get("phone"), contact.get("email"))
        if contact
        else None,
        reached=item.get("reached"),
        confirmed=item.get("confirmed"),
        score=item.get("score"),
        scale=(float(lo), float(hi)),
        comment=item.get("comment"),
        agent=item.get("agent"),
        raw=dict(item),
    )
    check_outcome(outcome, f"{where}: {path}")
    return outcome
