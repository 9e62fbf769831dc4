"""Column-at-a-time conversions of the stored export (:func:`core.export.rows.export_tuples`).

A big month's export converts a batch of rows one column at a time: each
conversion is one call per column, whose loop runs in C where it can
(``map`` over a dict's lookup) instead of a Python call per cell.

* :class:`Memo`: a pure function of one value (masking) applied once per
  distinct value of the batch and remembered for the next ones (contacts,
  titles and services repeat across a month), bounded in size;
* :func:`final_callbacks`: the final resolution's callback attempts and first
  reached-at, decoded from the stored JSON with orjson (the same values as
  the standard library's decoder gives, which it falls back to for what
  orjson rejects (NaN) or reads otherwise (integers beyond 64 bits, as floats).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import orjson

from core.export.local_time import LocalIso

MEMO_LIMIT = 20_000
"""Distinct values a :class:`Memo` keeps; emptied when it holds more (flat memory)."""


class Memo(dict[Any, Any]):
    """``fn`` of each value, computed once per distinct value (see module doc)."""

    def __init__(self, fn: Callable[[Any], Any], limit: int = MEMO_LIMIT) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, key: Any) -> Any:
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.fn(key)
        return value

    def column(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """``fn`` of every value, in order (a known value is a C-level dict lookup)."""
        return tuple(map(self.__getitem__, values))


_EXACT = (int, str, type(None))
"""What orjson reads as the standard library does (a float may be an integer beyond 64 bits)."""


def _decode(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN: what json reads and orjson does not
        return json.loads(text)


def _final(resolutions: Sequence[Any]) -> Any:
    """The last resolution whose ``final`` is set (None without one)."""
    for resolution in reversed(resolutions):
        if resolution.get("final"):
            return resolution
    return None


def final_callbacks(
    stored: Sequence[str | list[Any] | None], local: LocalIso
) -> tuple[list[Any], list[str | None]]:
    """Per stored ``resolutions`` (JSON text, or the list a driver decoded): the final
    resolution's callback attempts, and its first reached-at in the display zone.

    Both None without a final resolution (nothing is decoded when the text
    has no ``"final"`` key). A batch whose every text ends with its final
    resolution goes the batch way (:func:`_last_finals`).
    """
    found = _last_finals(stored, local)
    if found is not None:
        return found
    attempts: list[Any] = []
    reached: list[str | None] = []
    for value in stored:
        final = None
        if value:
            if isinstance(value, str):
                if '"final"' in value:
                    final = _final(_decode(value))
                    if final is not None and not isinstance(final.get("attempts"), _EXACT):
                        final = _final(json.loads(value))  # orjson reads big integers as floats
            else:
                final = _final(value)
        if final is None:
            attempts.append(None)
            reached.append(None)
        else:
            attempts.append(final.get("attempts"))
            at = final.get("first_reached_at")
            reached.append(local.iso_text(at) if at else None)
    return attempts, reached


_STR_ONLY = frozenset((str,))
_FINAL = repeat("final")
_ATTEMPTS = repeat("attempts")
_REACHED = repeat("first_reached_at")


def _last_finals(
    stored: Sequence[Any], local: LocalIso
) -> tuple[list[Any], list[str | None]] | None:
    """:func:`final_callbacks` of a batch of JSON texts, each a list whose last resolution
    is the final one (the usual case): one orjson call for the batch and C-level lookups.

    None (the caller takes each text alone) when a text is not text, has no
    ``"final"`` key, or the batch does not decode as that many lists whose
    last item is a final resolution (a dict) with integer or null attempts.
    """
    n = len(stored)
    if not n or set(map(type, stored)) != _STR_ONLY:
        return None
    if not all(map(str.__contains__, stored, repeat('"final"'))):
        return None
    try:
        decoded = orjson.loads("[" + ",".join(stored) + "]")
    except orjson.JSONDecodeError:  # NaN, or a text that is not JSON: each alone
        return None
    if len(decoded) != n or set(map(type, decoded)) != _LIST_ONLY:
        return None
    try:
        lasts = list(map(itemgetter(-1), decoded))
        if not all(map(dict.get, lasts, _FINAL)):
            return None
        attempts = list(map(dict.get, lasts, _ATTEMPTS))
        at = list(map(dict.get, lasts, _REACHED))
    except (IndexError, TypeError):  # an empty list, or an item that is not a dict
        return None
    if not set(map(type, attempts)) <= _EXACT_TYPES:  # a float may be a big integer
        return None
    if at.count(None) == n:
        return attempts, at
    return attempts, [local.iso_text(a) if a else None for a in at]


_LIST_ONLY = frozenset((list,))
_EXACT_TYPES = frozenset((int, type(None)))
"""Attempts orjson reads as json does (bool, float, text… go the exact way)."""
