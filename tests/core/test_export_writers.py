"""The writers' column-at-a-time paths give the bytes of the row-by-row ones: JSON lines of
tuple rows are what ``json.dumps`` makes of each row's dict; CSV columns of any values are
the cells :func:`csv_cell` makes."""

from __future__ import annotations

import io
import json
import math
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from core.export.writers import (
    CSV_BATCH,
    CellKind,
    Table,
    _json_column,
    csv_chunks,
    jsonl_chunks,
    xlsx_chunks,
)

AWKWARD_TEXT = [
    "plain",
    'a ", " inside',
    "ends with a backslash \\",
    'quote " and \\" escaped',
    "line\nbreak\ttab\x00nul\x1f",
    "ünïcödé 中文 😀 \u2028 \u2029",
    "",
    "%s %% %(x)s {0}",
    "null, true",
]
AWKWARD_SCALARS = [0, -1, 2**70, -(2**70), 1.5, -0.0, 1e300, math.nan, math.inf, -math.inf]


def _dumps_lines(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    return "".join(
        json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n" for row in rows
    ).encode("utf-8")


@pytest.mark.parametrize(
    "column",
    [
        AWKWARD_TEXT,
        [*AWKWARD_TEXT, None],
        [None, None],
        [1, 2, 3],
        [None, 1, 2**80],
        AWKWARD_SCALARS,
        [True, False, None, 3, 2.25],
        [[1, "a, b"], {"k": None, "x": [1.5]}, "text", None, True, 7],
        # one value over the column (encoded once), and equal values of other texts
        ["same", "same", "same"],
        [5, 5],
        [True, True],
        [1, 1.0, True],
        [0.0, -0.0],
        [[1], [1]],
    ],
)
def test_a_column_is_encoded_as_the_encoder_writes_each_value(column: list[Any]) -> None:
    assert _json_column(column) == [json.dumps(v, ensure_ascii=False) for v in column]
    assert _json_column(tuple(column)) == [json.dumps(v, ensure_ascii=False) for v in column]


def test_tuple_rows_give_the_bytes_of_dict_rows() -> None:
    columns = ('text "q"', "maybe", "count", "flag", "any", "100%", "empty")
    n = CSV_BATCH * 2 + 3  # several batches, the last one short
    rows = [
        (
            AWKWARD_TEXT[i % len(AWKWARD_TEXT)],
            None if i % 3 else AWKWARD_TEXT[i % 4],
            i * 10**15 if i % 7 else -i,
            (True, False, None)[i % 3],
            AWKWARD_SCALARS[i % len(AWKWARD_SCALARS)] if i % 5 else [i, {"a": "b, c"}],
            f"{i}%",
            None,
        )
        for i in range(n)
    ]
    fast = b"".join(jsonl_chunks(Table("t", columns, iter(rows), tuples=True), chunk_bytes=999))
    dicts = [dict(zip(columns, row, strict=True)) for row in rows]
    slow = b"".join(jsonl_chunks(Table("t", columns, iter(dicts))))
    assert fast == slow == _dumps_lines(columns, rows)
    assert fast.count(b"\n") == n


def test_repeated_column_names_keep_the_last_value_as_a_dict_does() -> None:
    columns = ("a", "b", "a")
    rows = [(1, 2, 3), (None, "x", "y")]
    got = b"".join(jsonl_chunks(Table("t", columns, iter(rows), tuples=True)))
    assert got == b'{"a": 3, "b": 2}\n{"a": "y", "b": "x"}\n'


def test_csv_any_columns_column_by_column_give_the_cells_bytes() -> None:
    columns = ("ints", "nones", "mixed", "floats")
    n = CSV_BATCH + 5
    rows = [
        (
            None if i % 4 == 0 else i - 50,
            None,
            (None, 3, True, "=1+1", 2.5, [1])[i % 6],
            (1.5, math.nan, math.inf, None)[i % 4] if i > CSV_BATCH else None,
        )
        for i in range(n)
    ]
    kinds: tuple[CellKind, ...] = ("any",) * len(columns)
    fast = b"".join(csv_chunks(Table("t", columns, iter(rows), tuples=True, kinds=kinds)))
    slow = b"".join(csv_chunks(Table("t", columns, iter(rows), tuples=True)))
    assert fast == slow
    assert b'\r\n-49,"",3,""\r\n' in fast and b"'=1+1" in fast and b'"nan"' in fast


def test_columns_of_one_value_in_the_line_template_keep_their_bytes() -> None:
    columns = ("policy %s", "100%", "n", "none")
    rows = [("p%s%%", "50% off", i if i >= CSV_BATCH else 7, None) for i in range(CSV_BATCH + 3)]
    rows += [("p%s%%", "50% off", 7, None)]  # a last batch of one row
    fast = b"".join(jsonl_chunks(Table("t", columns, iter(rows), tuples=True)))
    assert fast == _dumps_lines(columns, rows)
    only = [("%d", 1)] * 5  # every column one value: no row is formatted
    assert b"".join(jsonl_chunks(Table("t", ("a%", "b"), iter(only), tuples=True))) == (
        _dumps_lines(("a%", "b"), only)
    )


def test_a_columnar_table_gives_the_bytes_of_its_rows() -> None:
    columns = ("text", "n", "flag", "any")
    kinds: tuple[CellKind, ...] = ("text", "plain", "flag", "any")
    rows = [
        (AWKWARD_TEXT[i % len(AWKWARD_TEXT)], i, (True, None)[i % 2], (1.5, "=x", None)[i % 3])
        for i in range(CSV_BATCH + 40)
    ]
    sizes = [1, CSV_BATCH + 7, 32]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    batches = [list(zip(*rows[a : a + n], strict=True)) for a, n in zip(starts, sizes, strict=True)]

    def table(columnar: bool) -> Table:
        data: Any = iter(batches) if columnar else iter(rows)
        return Table("t", columns, data, tuples=not columnar, kinds=kinds, columnar=columnar)

    for chunks in (csv_chunks, jsonl_chunks):
        assert b"".join(chunks(table(True))) == b"".join(chunks(table(False)))
    sheets = []
    for columnar in (True, False):
        data = b"".join(xlsx_chunks([table(columnar)], created=datetime(2026, 1, 1, tzinfo=UTC)))
        sheets.append(zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml"))
    assert sheets[0] == sheets[1]
