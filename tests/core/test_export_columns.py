"""The stored export's column conversions: memoised masks, the final callback, driver rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, Integer, String, column, create_engine, literal, select, table
from sqlalchemy.orm import Session

from core.export.columns import Memo, final_callbacks
from core.export.driver_rows import driver_batches
from core.export.local_time import LocalIso
from core.privacy import mask_phone
from core.timeutil import local_iso


def test_memo_gives_the_function_of_each_value_and_stays_bounded() -> None:
    calls: list[Any] = []

    def fn(value: Any) -> Any:
        calls.append(value)
        return mask_phone(value)

    memo = Memo(fn, limit=3)
    values = ["+8613812345678", None, "+8613812345678", "021-5555-0101", "", "1", "2", "3", "1"]
    assert memo.column(values) == tuple(mask_phone(v) for v in values)
    assert len(memo) <= 3
    assert calls.count("+8613812345678") == 1  # a known value is not computed again
    assert len(calls) == len(set(values)) + 1  # "1" again after the memo was emptied


PARIS = ZoneInfo("Europe/Paris")


def _reference(stored: Any) -> tuple[Any, Any]:
    """What incident_row shows: the last final resolution's attempts and reached-at."""
    if not stored:
        return None, None
    decoded = json.loads(stored) if isinstance(stored, str) else stored
    finals = [r for r in decoded if r.get("final")]
    final = finals[-1] if finals else {}
    at = final.get("first_reached_at")
    return final.get("attempts"), local_iso(datetime.fromisoformat(at), PARIS) if at else None


CASES: list[Any] = [
    None,
    "",
    "[]",
    json.dumps([{"final": False, "attempts": 3, "first_reached_at": "2026-10-01T00:00:00+00:00"}]),
    json.dumps(
        [
            {"final": True, "attempts": 1, "first_reached_at": "2026-10-25T00:59:59+00:00"},
            {"final": True, "attempts": 2, "first_reached_at": "2026-10-25T01:30:00.250000+01:00"},
            {"final": False, "attempts": 9},
        ]
    ),
    json.dumps([{"final": 1, "attempts": None, "first_reached_at": None}]),
    '[{"final": true, "attempts": NaN, "first_reached_at": null}]',  # orjson rejects NaN
    '[{"final": true, "attempts": 123456789012345678901234567890}]',  # beyond 64 bits
    [{"final": True, "attempts": 4, "first_reached_at": "2026-10-03T10:00:00+00:00"}],  # decoded
]


def test_final_callbacks_are_those_of_the_last_final_resolution() -> None:
    attempts, reached = final_callbacks(CASES, LocalIso(PARIS))
    expected = [_reference(c) for c in CASES]
    got = list(zip(attempts, reached, strict=True))
    assert [repr(g) for g in got] == [repr(e) for e in expected]  # NaN == NaN by its repr
    assert got[4] == (2, "2026-10-25T02:30:00.250000+02:00")  # 00:30 UTC, before the change
    assert got[7][0] == 123456789012345678901234567890


def _last_final(attempts: Any, at: str | None, before: int = 0) -> str:
    earlier = [{"final": True, "attempts": 99, "first_reached_at": None}] * before
    return json.dumps(
        [*earlier, {"index": 0, "final": True, "attempts": attempts, "first_reached_at": at}]
    )


USUAL = [
    _last_final(0, None),
    _last_final(3, "2026-10-25T00:59:59+00:00", before=1),
    _last_final(None, "2026-10-25T01:30:00.250000+00:00"),
    _last_final(2**62, "2026-10-01T08:00:00+05:30"),
    _last_final(1, None, before=2),
]
"""Texts whose last resolution is the final one: a batch of them is decoded at once."""


def test_a_batch_of_usual_texts_is_decoded_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_at_a_time(text: str) -> Any:
        raise AssertionError(text)

    monkeypatch.setattr("core.export.columns._decode", one_at_a_time)
    attempts, reached = final_callbacks(USUAL, LocalIso(PARIS))
    assert list(zip(attempts, reached, strict=True)) == [_reference(c) for c in USUAL]
    assert reached[2] == "2026-10-25T02:30:00.250000+01:00"  # after the change
    no_reached = [_last_final(i, None) for i in range(3)]
    assert final_callbacks(no_reached, LocalIso(PARIS)) == ([0, 1, 2], [None, None, None])


@pytest.mark.parametrize(
    "odd",
    [
        *CASES,
        '[{"final": true, "attempts": 1.5}]',
        '[{"final": true, "attempts": true}]',
        '[{"final": true, "attempts": [1]}]',
        '[{"final": true, "attempts": 1}, {"final": false, "attempts": 2}]',
        '[{"final": true, "first_reached_at": ""}]',
        "[1]",
        "[[]]",
        '{"final": true}',
        ' [{"final": true, "attempts": 5}] ',
        '[{"final": true, "attempts": 5}], [{"final": true}',  # two lists in one text
        "not json",
    ],
)
def test_an_odd_text_in_a_batch_gives_what_each_alone_gives(odd: Any) -> None:
    local = LocalIso(PARIS)

    def alone(text: Any) -> Any:
        attempts, reached = final_callbacks([text], local)
        return attempts[0], reached[0]

    batch = [*USUAL, odd, *USUAL]
    try:
        expected = [alone(c) for c in batch]
    except (ValueError, AttributeError) as exc:  # not JSON, not a list: as the text alone
        with pytest.raises(type(exc)):
            final_callbacks(batch, local)
        return
    attempts, reached = final_callbacks(batch, local)
    got = list(zip(attempts, reached, strict=True))
    assert [repr(g) for g in got] == [repr(e) for e in expected]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, flag BOOLEAN)")
        conn.exec_driver_sql(
            "INSERT INTO t (id, name, flag) VALUES "
            + ", ".join(f"({i}, 'n{i % 3}', {i % 2})" for i in range(10))
        )
    yield engine
    engine.dispose()


T = table("t", column("id", Integer), column("name", String), column("flag", Integer))


def test_driver_batches_read_the_rows_a_batch_at_a_time(db: Engine) -> None:
    query = select(T.c.id, T.c.name, T.c.flag).where(T.c.name != "n1").order_by(T.c.id)
    with Session(db) as s:
        batches = list(driver_batches(s, query, 3))
    rows = [tuple(r) for b in batches for r in b]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert rows == [(i, f"n{i % 3}", i % 2) for i in range(10) if i % 3 != 1]


def test_driver_batches_close_the_cursor_when_the_reader_stops(db: Engine) -> None:
    with Session(db) as s:
        batches = driver_batches(s, select(T.c.id).order_by(T.c.id), 2)
        assert [tuple(r) for r in next(batches)] == [(0,), (1,)]
        batches.close()
        assert s.connection().exec_driver_sql("SELECT count(*) FROM t").scalar() == 10


def test_driver_batches_take_text_and_int_parameters_only(db: Engine) -> None:
    with Session(db) as s:  # an int needs no bind processing (an export part's incident id)
        query = select(T.c.id).where(T.c.id > literal(3), T.c.name != literal("n9"))
        assert [r[0] for b in driver_batches(s, query, 4) for r in b] == list(range(4, 10))
    with Session(db) as s, pytest.raises(ValueError, match="text and int parameters"):
        next(driver_batches(s, select(T.c.id).where(T.c.id > literal(3.5)), 2))
    with Session(db) as s, pytest.raises(ValueError, match="text and int parameters"):
        next(driver_batches(s, select(T.c.id).where(T.c.flag == literal(True)), 2))
