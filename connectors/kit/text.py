"""Rich text (HTML) from a ticketing tool as plain text: paragraphs on their own lines."""

from __future__ import annotations

import html
import re

_BLOCK_END = re.compile(r"</(p|div|li|h[1-6]|tr)>|<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]+>")


def html_text(text: str) -> str:
    """``text``'s tags removed (block ends and ``<br>`` as line breaks), entities decoded."""
    plain = html.unescape(_TAG.sub("", _BLOCK_END.sub("\n", text)))
    return "\n".join(line.strip() for line in plain.splitlines()).strip()
