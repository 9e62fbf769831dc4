"""A JSON object kept as its encoded text, decoded only when something reads it.

A pull's child process (``connectors.kit.child``) encodes each record's raw
payload once to send it; the storing process writes that payload into a
JSON column and never reads it. :class:`JsonText` lets the payload cross as
its text and be stored as it is (``core.store.db.json_text`` writes the text
unchanged), without being decoded into dicts and encoded again. It is a
read-only :class:`~collections.abc.Mapping`: reading a key, iterating or
comparing decodes the text once (orjson) and answers from the value.

The text must be what ``json_text`` writes for the value (orjson's compact
UTF-8 text of a JSON object): the stored column is then the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson


class JsonText(Mapping[str, Any]):
    """A JSON object as its UTF-8 text (module docstring)."""

    __slots__ = ("_text", "_value")

    def __init__(self, text: bytes) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """The JSON text, as ``core.store.db.json_text`` returns it."""
        return self._text.decode()

    def value(self) -> dict[str, Any]:
        """The decoded object (decoded once)."""
        if self._value is None:
            decoded = orjson.loads(self._text)
            if type(decoded) is not dict:
                msg = f"JsonText holds a JSON {type(decoded).__name__}, not an object"
                raise TypeError(msg)
            self._value = decoded
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self.value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value())

    def __len__(self) -> int:
        return len(self.value())

    def __repr__(self) -> str:
        return f"JsonText({self._text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (JsonText, (self._text,))
