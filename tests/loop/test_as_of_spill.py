"""The export as of an instant streams through a spill (issue 11 item 4: memory stays flat).

:func:`core.export.spill.spill_month` gives the rows and indicators that
:func:`judge_period` with :func:`rows_as_of`, :func:`nc_rows_as_of` and
:func:`indicators_as_of` give, in the period's order, without keeping the
judged incidents.

Calendar: Asia/Shanghai, Mon–Fri 09:00–12:00 and 13:00–18:00. Incidents
arrive in key order (so their ids follow it); the period orders them by
resolution, then id:

- B-1 (P2): answered after 2 business hours, resolved last, Fri 10-16 15:00
  (response and resolution breaches); never reached (callback missed).
- B-2 (P3): resolved Wed 10-14 15:00, reached on time (score 5).
- B-3 (P3): resolved Wed 10-14 15:00 too (a tie: after B-2 by id); never reached.
- B-4 (P4): resolved first, Tue 10-13 16:00; reached on time, a low score (2).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import core.export.as_of as as_of_module
import core.export.spill as spill_module
from core.export.as_of import (
    Judged,
    indicators_as_of,
    judge_period,
    parse_as_of,
    rows_as_of,
)
from core.export.nc_sheet import nc_rows_as_of
from core.export.spill import spill_month
from core.loop import run_once
from core.records import Category as C
from tests.utils.fixture_connectors import WORLD, attempt, incident, register_fixture_types
from tests.utils.loop import Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-10"
AS_OF = parse_as_of("2026-11-05T00:00:00+08:00")


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def _resolved(key: str, prio: str, created: datetime, answered: datetime, done: datetime) -> Any:
    return incident(
        key, prio, created, [(created, C.NEW), (answered, C.IN_PROGRESS), (done, C.RESOLVED)]
    )


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    WORLD.reset()
    WORLD.incidents = [
        _resolved("B-1", "P2", L(10, 12, 9), L(10, 12, 11), L(10, 16, 15)),
        _resolved("B-2", "P3", L(10, 13, 9), L(10, 13, 9, 10), L(10, 14, 15)),
        _resolved("B-3", "P3", L(10, 13, 10), L(10, 13, 10, 10), L(10, 14, 15)),
        _resolved("B-4", "P4", L(10, 13, 11), L(10, 13, 11, 10), L(10, 13, 16)),
    ]
    WORLD.answers = {
        "B-2": [attempt(L(10, 15, 10), True, True, 5)],
        "B-4": [attempt(L(10, 14, 10), True, True, 2)],
    }
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()


@pytest.mark.parametrize("unmask", [False, True])
def test_spilled_month_is_the_judged_period(deployment: Deployment, unmask: bool) -> None:
    rt = deployment.open()
    run_once(rt)
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.session() as s:
        period = judge_period(rt, s, "default", PERIOD, AS_OF)
        expected_rows = list(rows_as_of(period, tz=tz, unmask=unmask))
        expected_ncs = list(nc_rows_as_of(period, tz=tz, unmask=unmask))
        expected_indicators = indicators_as_of(rt, period)
        spilled = spill_month(rt, s, "default", PERIOD, AS_OF, tz=tz, unmask=unmask)
    # read back after the session is gone, twice: the same rows, keys and order
    with spilled:
        assert len(spilled) == 4
        for _ in range(2):
            rows = list(spilled.incident_rows())
            assert rows == expected_rows
            assert [list(r) for r in rows] == [list(r) for r in expected_rows]
            ncs = list(spilled.nc_rows())
            assert ncs == expected_ncs
            assert [list(r) for r in ncs] == [list(r) for r in expected_ncs]
        assert spilled.indicators == expected_indicators
    assert [r["incident_key"] for r in rows] == ["B-4", "B-2", "B-3", "B-1"]
    assert [(r["incident_key"], r["rule"]) for r in ncs] == [
        ("B-4", "low_satisfaction"),
        ("B-3", "callback_missed"),
        ("B-1", "response_breach"),
        ("B-1", "resolution_breach"),
        ("B-1", "callback_missed"),
    ]
    assert spilled.indicators.resolved == 4
    assert spilled.indicators.nonconformities_total == 5
    assert (rows[0]["contact_phone"] == "13800000000") is unmask
    with pytest.raises(ValueError, match="closed file"):
        next(spilled.incident_rows())


def test_spill_keeps_no_judged_incident(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk lets each judged incident go once its rows are spilled: memory stays flat."""
    rt = deployment.open()
    run_once(rt)
    monkeypatch.setattr(as_of_module, "JUDGE_CHUNK", 1)
    seen: list[list[weakref.ref[Judged]]] = []
    alive_two_back: list[int] = []
    judge = spill_module.judge_chunks

    def watched(*args: Any, **kwargs: Any) -> Iterator[as_of_module.Chunk]:
        for chunk in judge(*args, **kwargs):
            if len(seen) >= 2:  # the chunk before the last may still be in a local
                gc.collect()
                alive_two_back.append(sum(ref() is not None for ref in seen[-2]))
            seen.append([weakref.ref(j) for j in chunk.incidents])
            yield chunk

    monkeypatch.setattr(spill_module, "judge_chunks", watched)
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.session() as s:
        spilled = spill_month(rt, s, "default", PERIOD, AS_OF, tz=tz, unmask=False)
        gc.collect()
        assert [len(refs) for refs in seen] == [1, 1, 1, 1]
        assert alive_two_back == [0, 0]
        assert [ref() for refs in seen for ref in refs] == [None] * 4
    with spilled:
        assert [r["incident_key"] for r in spilled.incident_rows()] == ["B-4", "B-2", "B-3", "B-1"]
