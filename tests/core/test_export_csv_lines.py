"""CSV lines built a column at a time are the ``csv`` writer's bytes (Excel dialect,
QUOTE_NONNUMERIC), for awkward text, numbers, constant columns and the separator itself;
the export's CSV writer with column kinds gives the bytes of the cell-by-cell one."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from core.export.csv_lines import (
    csv_column,
    csv_lines,
    csv_module_text,
    safe_text_cells,
)
from core.export.writers import CSV_BATCH, FORMULA_STARTS, CellKind, Table, csv_chunks

AWKWARD_TEXT = [
    "plain",
    'a "quoted" word',
    '"',
    '""',
    "comma, inside",
    "line\nbreak\r\nand\rcr",
    "nul \x00 inside",
    "\x00",
    "ünïcödé 中文 😀 \u2028",
    "",
    "%s {0}",
    " leading space",
    "'quoted already",
]


def _cells_of_writer(column: list[Any]) -> list[str]:
    return [csv_module_text([(v,)]).removesuffix("\r\n") for v in column]


@pytest.mark.parametrize(
    "column",
    [
        AWKWARD_TEXT,
        [*AWKWARD_TEXT, None],
        [None],
        [None, None, None],
        ["same", "same", "same"],
        ["\x00", "\x00"],
        [1, 2, -3, 2**80, 0],
        [7, 7, 7],
        [1, 1.0, 1],
        [0.0, -0.0],
        [1.5, -2.25, 1e300, 5e-324, math.nan, math.inf],
        [None, 1, 2.5, None],
        ["text", 3, None, 4.5, '"q"'],
    ],
)
def test_a_column_gives_the_cells_the_csv_writer_writes(column: list[Any]) -> None:
    assert csv_column(column) == _cells_of_writer(column)
    assert csv_column(tuple(column)) == _cells_of_writer(column)


@pytest.mark.parametrize(
    "column",
    [[True, False], [1, True], ["a", datetime(2026, 1, 1, tzinfo=UTC)], [b"bytes"], [[1]]],
)
def test_other_types_are_left_to_the_csv_writer(column: list[Any]) -> None:
    assert csv_column(column) is None


def test_lines_join_the_columns_as_the_writer_joins_a_row() -> None:
    rows = [(t, i, None if i % 2 else t) for i, t in enumerate(AWKWARD_TEXT)]
    columns = list(zip(*rows, strict=True))
    cells = [csv_column(c) for c in columns]
    assert all(c is not None for c in cells)
    assert csv_lines([c for c in cells if c is not None]) == csv_module_text(rows)


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_a_text_starting_like_a_formula_anywhere_in_the_column_is_found(start: str) -> None:
    for at in (0, 1, len(AWKWARD_TEXT)):
        column: list[Any] = list(AWKWARD_TEXT)
        column.insert(at, start + "1+1")
        assert safe_text_cells(column, FORMULA_STARTS) is None
        column[at] = "x" + start + "1+1"  # inside a text: safe
        assert safe_text_cells(column, FORMULA_STARTS) == _cells_of_writer(column)
    assert safe_text_cells([start, start], FORMULA_STARTS) is None  # one value, repeated
    # a column holding the separator is tested cell by cell: a NUL is not a cell's start
    assert safe_text_cells(["a\x00b", start + "x"], FORMULA_STARTS) is None
    column = ["a\x00" + start, "b"]
    assert safe_text_cells(column, FORMULA_STARTS) == _cells_of_writer(column)


@pytest.mark.parametrize(
    "column",
    [
        [*AWKWARD_TEXT, None],
        ["same", "same"],
        [None, None],
        ["one"],
        ["a\x00b", None, 'c"'],
    ],
)
def test_safe_text_columns_are_quoted_as_the_writer_quotes(column: list[Any]) -> None:
    expected = _cells_of_writer(column)
    assert safe_text_cells(column, FORMULA_STARTS) == expected
    assert safe_text_cells(tuple(column), FORMULA_STARTS) == expected


@pytest.mark.parametrize("column", [["a", 1], [None, 2.5], ["x", True], [3, 3]])
def test_a_text_column_holding_other_values_is_not_taken(column: list[Any]) -> None:
    assert safe_text_cells(column, FORMULA_STARTS) is None


def test_every_kind_column_by_column_gives_the_cell_by_cell_bytes() -> None:
    columns = ("text", "plain", "flag", "any", "constant", "odd")
    kinds: tuple[CellKind, ...] = ("text", "plain", "flag", "any", "text", "plain")
    n = CSV_BATCH * 3 + 7

    def text(i: int) -> str | None:
        if i % 11 == 0:
            return None
        if CSV_BATCH <= i < 2 * CSV_BATCH and i % 50 == 3:
            return "=cmd()"  # the second batch holds formulas
        return AWKWARD_TEXT[i % len(AWKWARD_TEXT)]

    rows = [
        (
            text(i),
            (None, i, "2026-10-01T08:00:00+02:00")[i % 3],
            (True, False, None)[i % 3],
            (None, 3, 2.5, "-1", math.nan, [1])[i % 6],
            "policy",
            # the last batch holds a type the column way does not take
            datetime(2026, 1, 1, tzinfo=UTC) if i == n - 2 else i,
        )
        for i in range(n)
    ]
    fast = b"".join(
        csv_chunks(Table("t", columns, iter(rows), tuples=True, kinds=kinds), chunk_bytes=999)
    )
    slow = b"".join(csv_chunks(Table("t", columns, iter(rows), tuples=True)))
    assert fast == slow
    assert fast.count(b',"policy",') == n
    assert b'"\'=cmd()"' in fast and b'"2026-01-01 00:00:00+00:00"' in fast
