"""What the store can hold, checked before anything is written (SPEC §13).

Every column size of the tables that take outside input is a constant here:
:mod:`core.store.models` sizes its columns with them, the published schemas
(OpenAPI models, ``config/webhook/outcome.schema.json``) carry the same
limits, and :func:`check_outcome` refuses an outcome the store cannot hold
with an :class:`~core.errors.InputError` naming the field. PostgreSQL also
refuses the NUL character in text and the JSON tokens ``NaN``/``Infinity``;
both are refused everywhere, so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.errors import InputError
from core.records import Outcome

EVENT_ID_MAX = 200
"""``response.provider_event_id``: a webhook-id or the provider's answer id."""
TOKEN_MAX = 64
"""``correlation_token`` of callback tasks, survey invitations and responses."""
REF_MAX = 200
"""``provider_ref`` and names (channels, agents, contacts)."""
NAME_MAX = 200
PHONE_MAX = 100
EMAIL_MAX = 320
COMMENT_MAX = 5000
"""Free-text comment of an answer (the column is unbounded; this keeps rows sane)."""

_STRING_LIMITS = (
    ("provider_event_id", EVENT_ID_MAX),
    ("correlation_token", TOKEN_MAX),
    ("provider_ref", REF_MAX),
    ("comment", COMMENT_MAX),
    ("agent", NAME_MAX),
)
_CONTACT_LIMITS = (("name", NAME_MAX), ("phone", PHONE_MAX), ("email", EMAIL_MAX))


def unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The first part of ``value`` no store can hold, as ``(path, why)``; None when all can.

    Walks mappings and sequences: a string (or key) holding NUL, a float
    that is NaN or infinite. Never quotes the value (it may be personal).
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where, "contains the NUL character (\\u0000)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where, "is not a finite number (NaN or Infinity)"
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{where}.<key>", "a key contains the NUL character (\\u0000)"
                stack.append((sub, f"{where}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{where}[{n}]") for n, sub in enumerate(item))
    return None


def too_long(value: str | None, limit: int) -> bool:
    return value is not None and len(value) > limit


def check_outcome(outcome: Outcome, where: str) -> None:
    """Refuse an outcome the store cannot hold, before anything is written.

    Raises:
        InputError: naming the field (``field``) and the limit; the value is
            never quoted.
    """
    found: list[tuple[str, str]] = []
    for name, limit in _STRING_LIMITS:
        value = getattr(outcome, name)
        if too_long(value, limit):
            found.append((name, f"is {len(value)} characters; at most {limit} are stored"))
    if outcome.contact is not None:
        for name, limit in _CONTACT_LIMITS:
            value = getattr(outcome.contact, name)
            if too_long(value, limit):
                found.append(
                    (f"contact.{name}", f"is {len(value)} characters; at most {limit} are stored")
                )
    checked: dict[str, Any] = {
        "provider_event_id": outcome.provider_event_id,
        "correlation_token": outcome.correlation_token,
        "provider_ref": outcome.provider_ref,
        "contact": vars(outcome.contact) if outcome.contact else None,
        "score": outcome.score,
        "scale": list(outcome.scale),
        "comment": outcome.comment,
        "agent": outcome.agent,
    }
    for name, value in checked.items():
        bad = unstorable(value, name)
        if bad is not None:
            found.append(bad)
    bad_raw = unstorable(dict(outcome.raw), "raw")
    if bad_raw is not None:
        found.append(bad_raw)
    if found:
        listed = "; ".join(f"{path} {why}" for path, why in found)
        msg = f"{where}: cannot be stored: {listed}"
        raise InputError(msg, field=found[0][0], errors=tuple(found))
