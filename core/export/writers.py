"""The export writer, one for the CLI and the API: CSV (Excel-safe UTF-8), XLSX, JSON lines.

An export is a list of :class:`Table` s (the incidents first, then the
indicators; another table is one more entry). Each format turns tables into
bytes, in chunks, as the rows come from the database:

* CSV and JSON: one file per table (:func:`files_of`); the API streams the
  first, the CLI writes them all (:mod:`core.export.files`).
* XLSX: one workbook with one sheet per table. A zip cannot be streamed
  while it is written, so the workbook is written (xlsxwriter,
  ``constant_memory``) into an anonymous temporary file, then read back in
  chunks.

Text from an ITSM tool or a customer never becomes a formula (OWASP CSV
injection; SPEC §13): a CSV text cell starting with ``= + - @``, tab or
carriage return gets a leading single quote, and every text cell is quoted
(inner double quotes doubled); XLSX cells are written as strings, never
formulas or links, with Excel's quote prefix on those starting so. Numbers
(negative ones too) stay numbers. JSON lines keep the raw value: JSON is
data, no spreadsheet evaluates it; whoever turns it into a sheet must
escape it there.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Literal, Protocol, cast

import xlsxwriter

from core.errors import InputError
from core.export.csv_lines import (
    constant_column,
    csv_column,
    csv_lines,
    csv_module_text,
    safe_text_cells,
)

FORMATS = ("csv", "xlsx", "jsonl")
CHUNK_BYTES = 64 * 1024
"""Size (about) of the chunks the writers produce."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these would be read as a formula by a spreadsheet."""
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
CSV_BATCH = 256
"""Rows a CSV table with column kinds converts at a time (column by column)."""
CellKind = Literal["text", "plain", "flag", "any"]
"""What a column can hold, for the CSV writer (:attr:`Table.kinds`):

* ``text``: text from outside (or None): a cell starting like a formula is made safe;
* ``plain``: int (never bool), None, or text that never starts with ``= + - @``,
  tab or CR (ISO 8601 instants): written as it is;
* ``flag``: True, False or None: yes, no, empty;
* ``any``: anything (each cell as :func:`csv_cell`).
"""
XLSX_OPTIONS = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}


class Tail(Protocol):
    """Chunks a CSV or JSON lines writer appends after its table's rows (:attr:`Table.tail`)."""

    def chunks(self, fmt: str) -> Iterator[bytes]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Table:
    """Rows under column names; one sheet of the workbook, one CSV or JSON lines file.

    Args:
        name: Sheet name; suffix of its file name when it is not the first table.
        columns: Column names, in order.
        rows: Dicts with (at least) every column; read once, lazily.
        document: For JSON: this data as one JSON document (``.json``)
            instead of the rows as JSON lines (the indicators' nested form).
        tuples: The rows are sequences of the values in column order, not dicts.
        columnar: ``rows`` gives batches of rows as their columns (each batch a
            sequence of columns in column order, of one length): a reader
            that converts a column at a time hands them to the writers, which
            encode a column at a time, without making rows in between.
        kinds: Per column, what its values can be (:data:`CellKind`): the
            CSV writer then converts a batch of rows column by column, with
            the same bytes as cell by cell. None: any value anywhere.
        tail: For CSV and JSON lines: the file's rest once ``rows`` were written
            (the later rows, written by other processes: :mod:`core.export.split`),
            closed when the writer ends, however it ends.
    """

    name: str
    columns: tuple[str, ...]
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]]
    document: Any = None
    tuples: bool = False
    kinds: tuple[CellKind, ...] | None = None
    columnar: bool = False
    tail: Tail | None = None


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        msg = f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}"
        raise InputError(msg)


def is_number(value: Any) -> bool:
    """A real numeric field (not a bool, not text that looks like a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def safe_text(text: str) -> str:
    """``=1+1`` → ``'=1+1``: a text a spreadsheet shows as text, never evaluates."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_cell(value: Any) -> Any:
    """A CSV cell: numbers as numbers, booleans as yes/no, None empty, text made safe."""
    kind = type(value)  # the exact common types first: one test per cell of a big export
    if kind is str:
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    if kind is int:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if is_number(value):
        return value if math.isfinite(value) else str(value)
    return safe_text(str(value))


def flatten_indicators(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"response": {"numerator": 3, ...}}`` → ("response.numerator", 3), …"""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten_indicators(value, f"{name}.")
        else:
            yield name, value


class Deferred:
    """A table's JSON document made only when it is written (after the tables before it).

    ``make`` runs once, on the first :meth:`value`.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make: Callable[[], Any] | None = make
        self._value: Any = None

    def value(self) -> Any:
        if self._make is not None:
            self._value = self._make()
            self._make = None
        return self._value


def indicators_table(
    indicators: Mapping[str, Any] | Callable[[], Mapping[str, Any]], prefix: str = ""
) -> Table:
    """The month's indicators as a two-column table (and, for JSON, the nested document).

    ``indicators`` may be a function that gives them: called only when the
    table is written (an export that counts them while its first table's
    rows are read).
    """
    if callable(indicators):
        deferred = Deferred(indicators)
        return Table(
            "indicators",
            ("indicator", "value"),
            _indicator_rows(deferred.value, prefix),
            document=deferred,
        )
    return Table(
        "indicators",
        ("indicator", "value"),
        _indicator_rows(lambda: indicators, prefix),
        document=indicators,
    )


def _indicator_rows(
    indicators: Callable[[], Mapping[str, Any]], prefix: str
) -> Iterator[dict[str, Any]]:
    for k, v in flatten_indicators(indicators(), prefix):
        yield {"indicator": k, "value": v}


def _values(table: Table, rows: Iterator[Any]) -> Iterator[Sequence[Any]]:
    """Each row's values in column order."""
    if table.columnar:
        return itertools.chain.from_iterable(zip(*batch, strict=True) for batch in rows)
    if table.tuples:
        return rows
    columns = table.columns
    return ([row[c] for c in columns] for row in rows)


def _mappings(table: Table, rows: Iterator[Any]) -> Iterator[Mapping[str, Any]]:
    """Each row as a mapping of column name to value."""
    if not table.tuples and not table.columnar:
        return rows
    columns = table.columns
    return (dict(zip(columns, row, strict=True)) for row in _values(table, rows))


def _column_batches(table: Table, rows: Iterator[Any]) -> Iterator[Sequence[Column]]:
    """The rows' values a batch at a time, as the batch's columns (a columnar table's
    batches as they come; others :data:`CSV_BATCH` rows at a time)."""
    if table.columnar:  # in slices of CSV_BATCH rows: the encoded texts of a few at a time
        for batch in rows:
            n = len(batch[0]) if batch else 0
            if n <= CSV_BATCH:
                if n:
                    yield batch
                continue
            for start in range(0, n, CSV_BATCH):
                yield [column[start : start + CSV_BATCH] for column in batch]
        return
    values = _values(table, rows)
    while batch := list(itertools.islice(values, CSV_BATCH)):
        yield list(zip(*batch, strict=True))


@contextlib.contextmanager
def _rows_of(table: Table) -> Iterator[Iterator[Any]]:
    """The table's rows, closed at the end even when the writer stops half-way.

    A ``for`` loop leaves a generator it did not finish open; the rows'
    generator holds a database cursor, which must not wait for the garbage
    collector.
    """
    rows = iter(table.rows)
    try:
        yield rows
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


class _Chunker:
    """Collects text and hands it out in UTF-8 chunks of about ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.buf = io.StringIO()
        self.size = size

    def full(self) -> bool:
        return self.buf.tell() >= self.size

    def take(self) -> bytes:
        data = self.buf.getvalue().encode("utf-8")
        self.buf.seek(0)
        self.buf.truncate()
        return data


_NONE_EMPTY = {None: ""}
_FLAGS = {None: "", True: "yes", False: "no"}
Column = Sequence[Any]


_INT_OR_NONE = frozenset((int, type(None)))


def _cells(column: Column) -> Column:
    if set(map(type, column)) <= _INT_OR_NONE:  # csv_cell keeps ints; csv writes None as ""
        return column
    return [csv_cell(v) for v in column]


def _safe_column(column: Column) -> Column:
    """A text column's cells: as they are unless one starts like a formula (or is not text)."""
    try:
        # C-level loops: None → "", then str.startswith; a value that is not text raises
        texts: Iterator[Any] = map(_NONE_EMPTY.get, column, column)
        if not any(map(str.startswith, texts, itertools.repeat(FORMULA_STARTS))):
            return column
    except TypeError:
        pass
    return _cells(column)


def _flag_column(column: Column) -> Column:
    try:
        return list(map(_FLAGS.__getitem__, column))
    except (KeyError, TypeError):
        return _cells(column)


_CONVERTERS: dict[str, Callable[[Column], Column] | None] = {
    "text": _safe_column,
    "plain": None,  # csv writes None as "" (quoted), as csv_cell does; ints and safe text as is
    "flag": _flag_column,
    "any": _cells,
}


def _csv_batches(batches: Iterator[Sequence[Column]], kinds: Sequence[CellKind]) -> Iterator[str]:
    """The CSV lines of each batch of columns, converted and written column by column
    (see :data:`CellKind` and :mod:`core.export.csv_lines`)."""
    converters = [_CONVERTERS[k] for k in kinds]
    texts = [k == "text" for k in kinds]
    for batch in batches:
        columns: list[Column] = list(batch)
        cells = _csv_cells(columns, converters, texts)
        if cells is not None:
            yield csv_lines(cells)
            continue
        for i, convert in enumerate(converters):  # a type the column way does not take
            if convert is not None:
                columns[i] = convert(columns[i])
        yield csv_module_text(list(zip(*columns, strict=True)))


def _csv_cells(
    columns: Sequence[Column],
    converters: Sequence[Callable[[Column], Column] | None],
    texts: Sequence[bool],
) -> list[Sequence[str]] | None:
    """Each column's CSV cells (a ``text`` column's unconverted when none needs it);
    None if a column holds a type :func:`~core.export.csv_lines.csv_column` does not take."""
    cells: list[Sequence[str]] = []
    for column, convert, text in zip(columns, converters, texts, strict=True):
        found: Sequence[str] | None = safe_text_cells(column, FORMULA_STARTS) if text else None
        if found is None:
            found = csv_column(column if convert is None else convert(column))
            if found is None:
                return None
        cells.append(found)
    return cells


def csv_chunks(
    table: Table, chunk_bytes: int = CHUNK_BYTES, *, header: bool = True
) -> Iterator[bytes]:
    """The table as CSV that Excel opens correctly (UTF-8 with BOM; text quoted and made safe).

    ``header``: False for the rows alone (no BOM, no column names): a part
    of a file whose start another writer made. The table's ``tail`` follows.
    """
    try:
        yield from _csv_rows(table, chunk_bytes, header)
        if table.tail is not None:
            yield from table.tail.chunks("csv")
    finally:
        if table.tail is not None:
            table.tail.close()


def _csv_rows(table: Table, chunk_bytes: int, header: bool) -> Iterator[bytes]:
    out = _Chunker(chunk_bytes)
    # QUOTE_NONNUMERIC: every text cell in double quotes (inner ones doubled), numbers bare
    writer = csv.writer(out.buf, dialect="excel", quoting=csv.QUOTE_NONNUMERIC)
    if header:
        out.buf.write("\ufeff")  # Excel reads the BOM and shows Chinese text correctly
        writer.writerow(table.columns)
    cell = csv_cell
    with _rows_of(table) as rows:
        if table.kinds is not None:
            parts = [out.buf.getvalue()]  # a batch's lines are one text: joined, not buffered
            size = len(parts[0])
            for text in _csv_batches(_column_batches(table, rows), table.kinds):
                parts.append(text)
                size += len(text)
                if size >= chunk_bytes:
                    yield "".join(parts).encode("utf-8")
                    parts, size = [], 0
            yield "".join(parts).encode("utf-8")
            return
        for values in _values(table, rows):
            writer.writerow([cell(v) for v in values])
            if out.full():
                yield out.take()
    yield out.take()


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
"""What ``json.dumps(value, ensure_ascii=False)`` makes of a value, per call."""
_SCALARS = frozenset((int, float, bool, type(None)))
"""Types whose JSON text never holds ``", "`` (numbers, true, false, null, NaN, Infinity)."""


def _json_column(column: Column) -> Column:
    """Each value's JSON text, as the encoder writes it inside an object.

    A column at a time, in C where the types allow it: text through the
    encoder's own string escaper, numbers, booleans and nulls as one
    encoded array split at its separators (none of their texts holds
    ``", "``); any other value encoded alone.
    """
    types = set(map(type, column))
    if len(column) > 1 and constant_column(column, types):
        return list(_json_column(column[:1])) * len(column)
    if types == _STR_ONLY:
        return list(map(encode_basestring, column))
    if types == _NONE_ONLY:
        return ["null"] * len(column)
    if types == _INT_ONLY:
        return list(map(int.__repr__, column))
    if types <= _SCALARS:
        return _ENCODE(column)[1:-1].split(", ")
    if types == _STR_OR_NONE:
        # None → "" (made "null" below), text as it is; a C-level loop
        texts = map(encode_basestring, cast(Iterator[str], map(_NONE_EMPTY.get, column, column)))
        return ["null" if v is None else t for v, t in zip(column, texts, strict=True)]
    return list(map(_ENCODE, column))


_STR_ONLY = frozenset((str,))
_NONE_ONLY = frozenset((type(None),))
_INT_ONLY = frozenset((int,))
_STR_OR_NONE = frozenset((str, type(None)))


def _jsonl_lines(columns: Sequence[str], batches: Iterator[Sequence[Column]]) -> Iterator[str]:
    """The JSON lines of each batch of columns (see :func:`jsonl_chunks`).

    Each line is one ``%`` template holding the encoded keys, and the texts
    of the batch's columns of one value (the policy, empty survey columns):
    only the other columns are formatted per row.
    """
    keys = [encode_basestring(c).replace("%", "%%") + ": " for c in columns]
    for batch in batches:
        n = len(batch[0]) if batch else 0
        parts: list[str] = []
        varying: list[Column] = []
        for key, column in zip(keys, batch, strict=True):
            encoded = _json_column(column)
            if n > 1 and encoded[0] is encoded[-1] and encoded.count(encoded[0]) == n:
                parts.append(key + encoded[0].replace("%", "%%"))
            else:
                parts.append(key + "%s")
                varying.append(encoded)
        line = "{" + ", ".join(parts) + "}\n"
        if varying:
            yield "".join(map(line.__mod__, zip(*varying, strict=True)))
        else:
            yield (line % ()) * n


def jsonl_chunks(table: Table, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """One JSON object per row and line (raw values: JSON is not evaluated).

    Rows given as tuples (unique column names) are encoded a batch at a
    time, column by column, into a line template holding the encoded keys
    (:func:`_json_column`): the same bytes as ``json.dumps`` of each row's
    dict, without a dict or an encoder call per row. The table's ``tail`` follows.
    """
    try:
        yield from _jsonl_rows(table, chunk_bytes)
        if table.tail is not None:
            yield from table.tail.chunks("jsonl")
    finally:
        if table.tail is not None:
            table.tail.close()


def _jsonl_rows(table: Table, chunk_bytes: int) -> Iterator[bytes]:
    out = _Chunker(chunk_bytes)
    encode = _ENCODE
    with _rows_of(table) as rows:
        columns = table.columns
        if (table.tuples or table.columnar) and columns and len(set(columns)) == len(columns):
            parts: list[str] = []  # a batch's lines are one text: joined, not buffered
            size = 0
            for text in _jsonl_lines(table.columns, _column_batches(table, rows)):
                parts.append(text)
                size += len(text)
                if size >= chunk_bytes:
                    yield "".join(parts).encode("utf-8")
                    parts, size = [], 0
            if parts:
                yield "".join(parts).encode("utf-8")
            return
        else:
            for row in _mappings(table, rows):
                out.buf.write(encode(row) + "\n")
                if out.full():
                    yield out.take()
    last = out.take()
    if last:
        yield last


def json_chunks(document: Any) -> Iterator[bytes]:
    """One indented JSON document (a :class:`Deferred` one made when the first chunk is read)."""
    if isinstance(document, Deferred):
        document = document.value()
    yield (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _xlsx_row(sheet: Any, r: int, values: Sequence[Any], quoted: Any) -> None:
    for c, value in enumerate(values):
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            sheet.write_string(r, c, "yes" if value else "no")
        elif is_number(value) and math.isfinite(value):
            sheet.write_number(r, c, value)
        else:
            text = str(value)
            sheet.write_string(r, c, text, quoted if text.startswith(FORMULA_STARTS) else None)


def xlsx_chunks(
    tables: Sequence[Table], chunk_bytes: int = CHUNK_BYTES, *, created: datetime | None = None
) -> Iterator[bytes]:
    """A workbook with one sheet per table, in constant memory; every text cell a string.

    The whole workbook is written before the first chunk is yielded, so a
    caller that takes the first chunk early (the API) sees every error
    before it starts answering. ``created`` is the workbook's creation date
    (default now): an export as of an instant passes that instant, so the
    same data gives the same bytes.
    """
    with tempfile.TemporaryFile(prefix="qloop-export-", suffix=".xlsx") as fh:
        book = xlsxwriter.Workbook(fh, XLSX_OPTIONS)
        try:
            if created is not None:
                # xlsxwriter writes the date as given (its zone ignored): pass UTC
                book.set_properties({"created": created.astimezone(UTC).replace(tzinfo=None)})
            bold = book.add_format({"bold": True})
            quoted = book.add_format({"quote_prefix": True})
            for table in tables:
                sheet = book.add_worksheet(table.name[:31])
                for c, column in enumerate(table.columns):
                    sheet.write_string(0, c, column, bold)
                sheet.freeze_panes(1, 0)
                with _rows_of(table) as rows:
                    for r, row in enumerate(_values(table, rows), start=1):
                        _xlsx_row(sheet, r, row, quoted)
                if table.document is not None:
                    sheet.set_column(0, 0, 48)
        finally:
            book.close()
        fh.seek(0)
        while chunk := fh.read(chunk_bytes):
            yield chunk


def files_of(
    basename: str, fmt: str, tables: Sequence[Table], *, created: datetime | None = None
) -> list[tuple[str, Iterator[bytes]]]:
    """The files of an export: (file name, its bytes in chunks), nothing read yet.

    XLSX: ``<basename>.xlsx`` with a sheet per table. CSV and JSON: the first
    table is ``<basename>.csv|jsonl``, the others ``<basename>-<name>.csv``
    (``.json`` for a table with a JSON ``document``). ``created``: the XLSX
    creation date (see :func:`xlsx_chunks`).
    """
    check_format(fmt)
    if fmt == "xlsx":
        return [(f"{basename}.xlsx", xlsx_chunks(tables, created=created))]
    files: list[tuple[str, Iterator[bytes]]] = []
    for i, table in enumerate(tables):
        stem = basename if i == 0 else f"{basename}-{table.name}"
        if fmt == "csv":
            files.append((f"{stem}.csv", csv_chunks(table)))
        elif table.document is not None:
            files.append((f"{stem}.json", json_chunks(table.document)))
        else:
            files.append((f"{stem}.jsonl", jsonl_chunks(table)))
    return files
