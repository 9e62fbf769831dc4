"""CSV lines built a column at a time: the bytes of ``csv.writer`` (Excel dialect,
``QUOTE_NONNUMERIC``) without its per-cell work.

The C ``csv`` writer tests each cell's type, quotes it and scans it for the
quote character one cell at a time: about 9 µs a row of the month's export
(38 cells). The rules it applies with ``QUOTE_NONNUMERIC`` are simple:

* text: in double quotes, inner double quotes doubled (nothing else is escaped);
* None: an empty quoted cell, ``""``;
* a number (int, float): ``str(value)``, bare;
* cells joined by ``,``, each row ended by ``\\r\\n``.

:func:`csv_column` applies them to a batch's column in C: a text column is
joined into one string, its quotes doubled and its separators turned into
``","`` by two ``str.replace``, then split back into cells; a number column
is ``map(str, …)``; a column of one value (the policy, an empty survey
column) is its cell repeated. :func:`safe_text_cells` does the same for
text from outside and finds a cell starting like a formula on the joined
text. :func:`csv_lines` then joins each row with one ``",".join``. A column
holding anything else (a bool, a date…) gives None: the caller writes that
batch with the ``csv`` writer (:func:`csv_module_text`), so the bytes are
the writer's for every value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

_SEP = "\x00"
"""Joins a text column's cells while they are quoted (a column holding it is quoted per cell)."""
_NONE = type(None)
_TEXTS = frozenset((str, _NONE))
_NUMBERS = frozenset((int, float))
_NUMBERS_OR_NONE = frozenset((int, float, _NONE))
_PLAIN = frozenset((str, int, float, _NONE))
_NONE_EMPTY = {None: ""}
_NONE_QUOTED = {None: '""'}


def _joined(texts: Sequence[str]) -> str | None:
    """The texts joined by :data:`_SEP`; None if one holds it."""
    joined = _SEP.join(texts)
    return joined if joined.count(_SEP) == len(texts) - 1 else None


def _quote_joined(joined: str) -> list[str]:
    """The cells of a :func:`_joined` text, each in double quotes, inner ones doubled."""
    if '"' in joined:
        joined = joined.replace('"', '""')
    return ('"' + joined.replace(_SEP, '"' + _SEP + '"') + '"').split(_SEP)


def _quoted(texts: Sequence[str]) -> list[str]:
    """Each text in double quotes, inner ones doubled."""
    joined = _joined(texts)
    if joined is None:  # a text holds the separator: cell by cell
        return ['"' + t.replace('"', '""') + '"' for t in texts]
    return _quote_joined(joined)


def constant_column(column: Sequence[Any], types: set[type]) -> bool:
    """Every cell of ``column`` is the same text, int or None (the same CSV and JSON text)."""
    return (
        len(types) == 1
        and len(column) > 1
        and type(column[0]) in _CONSTANT_TYPES
        and column.count(column[0]) == len(column)
    )


_CONSTANT_TYPES = frozenset((str, int, _NONE))
"""Types whose equal values have the same text (not float: 0.0 == -0.0)."""


def safe_text_cells(column: Sequence[Any], unsafe_starts: tuple[str, ...]) -> list[str] | None:
    """The quoted cells of a column of text or None (None: ``""``), or None when a text
    starts with one of ``unsafe_starts`` or a cell is not text or None.

    The tests run on the column joined into one text (a cell starts with ``c``
    when the text starts with it or holds the separator followed by it), so
    a column of safe text costs a few C-level scans, not a test per cell.
    """
    first = column[0]
    if len(column) > 1 and first == column[-1] and column.count(first) == len(column):
        cell = safe_text_cells([first], unsafe_starts)
        return None if cell is None else cell * len(column)
    try:
        joined = _joined(list(map(_NONE_EMPTY.get, column, column)))
    except TypeError:  # not text (map's C loop runs on; join raises)
        return None
    if joined is None:  # a text holds the separator: cell by cell
        texts: list[str] = list(map(_NONE_EMPTY.get, column, column))
        if any(t.startswith(unsafe_starts) for t in texts):
            return None
        return _quoted(texts)
    if joined.startswith(unsafe_starts):
        return None
    for start in unsafe_starts:
        if _SEP + start in joined:
            return None
    return _quote_joined(joined)


def _cell(value: Any) -> str:
    """One cell of a column mixing text and numbers."""
    if type(value) is str:
        return '"' + value.replace('"', '""') + '"'
    return '""' if value is None else str(value)


def csv_column(column: Sequence[Any]) -> Sequence[str] | None:
    """The CSV text of each cell of ``column``; None if it holds something other than
    text, int, float or None (exact types)."""
    types = set(map(type, column))
    if constant_column(column, types):
        return list(csv_column(column[:1]) or ()) * len(column)
    if types <= _TEXTS:
        return _quoted(list(map(_NONE_EMPTY.get, column, column)) if _NONE in types else column)
    if types <= _NUMBERS:
        return list(map(str, column))
    if types <= _NUMBERS_OR_NONE:
        return list(map(_NONE_QUOTED.get, column, map(str, column)))
    if types <= _PLAIN:
        return list(map(_cell, column))
    return None


def csv_lines(cells: Sequence[Sequence[str]]) -> str:
    """The CSV lines of a batch given as its columns' cell texts (at least one column)."""
    return "\r\n".join(map(",".join, zip(*cells, strict=True))) + "\r\n"


def csv_module_text(rows: Sequence[Sequence[Any]]) -> str:
    """The ``csv`` writer's lines of ``rows`` (what :func:`csv_column` does not take)."""
    buf = io.StringIO()
    csv.writer(buf, dialect="excel", quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
    return buf.getvalue()
