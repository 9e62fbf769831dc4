"""A small JSONPath-like dotted path: ``result``, ``data.items``, ``links.next.href``, ``0.id``.

A part that is an integer indexes a list; ``$`` alone (or an empty path)
is the document itself. A path that leads nowhere reads as None.
"""

from __future__ import annotations

from typing import Any


def parts(path: str) -> tuple[str, ...]:
    text = path.strip()
    if text in ("", "$"):
        return ()
    if text.startswith("$."):
        text = text[2:]
    return tuple(text.split("."))


def read(doc: Any, path: str) -> Any:
    """The value at ``path`` in ``doc`` (None when any step is missing)."""
    node = doc
    for part in parts(path):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            node = node[index] if -len(node) <= index < len(node) else None
        else:
            return None
        if node is None:
            return None
    return node
