"""A pull fetched and converted in a child process (connectors.kit.child, .wire)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from connectors.http import HttpService
from connectors.kit import wire
from connectors.kit.child import in_child
from core.errors import FatalError, RetriableError
from core.records import Category, Contact, IncidentRecord, PulledBatch, Rejected, StatusChange
from tests.connectors.test_kit_stream import T0, Tool, driver

SHANGHAI = timezone(timedelta(hours=8))


def record(n: int, **changes: Any) -> IncidentRecord:
    values: dict[str, Any] = {
        "external_id": str(n),
        "key": f"K-{n}",
        "title": f"title {n}",
        "priority": "P2",
        "status": "In Progress",
        "category": Category.IN_PROGRESS,
        "created_at": T0.astimezone(SHANGHAI),
        "updated_at": T0 + timedelta(minutes=n),
        "history": (
            StatusChange(T0, Category.NEW, "New"),
            StatusChange(T0 + timedelta(minutes=1), Category.IN_PROGRESS, "In Progress"),
        ),
        "service": "erp",
        "customer": None,
        "contact": Contact("Ann", "+33 6 12 34 56 78", None),
        "first_response_at": T0 + timedelta(minutes=2),
        "source_sla": {"ttr": {"breached": False, "goal_ms": 3_600_000}},
        "raw": {"id": str(n), "fields": {"summary": f"title {n}", "labels": ["a", "b"]}, "n": 1.5},
    }
    values.update(changes)
    return IncidentRecord(**values)


def test_wire_round_trips_records_equal_with_their_types() -> None:
    class Odd(IncidentRecord):
        pass

    odd = Odd(**{k: getattr(record(9), k) for k in IncidentRecord.__dataclass_fields__})
    batch = PulledBatch(
        [record(1), record(2, history=[StatusChange(T0, Category.NEW)]), odd, record(3)],
        "cursor-1",
        [Rejected.of("K-7", FatalError("bad"), T0)],
        skipped_own=2,
    )
    back = wire.unpack(wire.pack(batch))
    assert back.records == batch.records and back.cursor == "cursor-1"
    assert back.rejected == list(batch.rejected) and back.skipped_own == 2
    assert type(back.records[2]) is Odd and type(back.records[1].history) is list
    first = back.records[0]
    assert first.category is Category.IN_PROGRESS
    assert first.history[1].category is Category.IN_PROGRESS
    assert first.created_at.utcoffset() == timedelta(hours=8)
    with pytest.raises(AttributeError):  # still frozen
        first.title = "x"  # type: ignore[misc]


def test_wire_keeps_payloads_that_are_not_plain_json_as_they_are() -> None:
    batch = PulledBatch([record(1), record(2, raw={"at": T0, 3: "non-string key"})], None)
    back = wire.unpack(wire.pack(batch))
    assert back.records == batch.records
    assert back.records[1].raw == {"at": T0, 3: "non-string key"}


def _count(n: int, fail: Exception | None = None) -> Iterator[tuple[int, int]]:
    for i in range(n):
        yield i, os.getpid()
    if fail is not None:
        raise fail


def test_in_child_yields_what_the_child_made_then_raises_its_error() -> None:
    got = []
    error = RetriableError("429 from the tool", retry_after=7.0)
    with pytest.raises(RetriableError, match="429 from the tool") as raised:
        for item in in_child(lambda: _count(5, error), "sources.t"):
            got.append(item)
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert {pid for _, pid in got} != {os.getpid()}  # made in another process
    assert raised.value.retry_after == 7.0


def test_a_child_killed_midway_is_a_retriable_error() -> None:
    def suicide() -> Iterator[int]:
        yield 1
        os.kill(os.getpid(), signal.SIGKILL)
        yield 2

    stream = in_child(suicide, "sources.t")
    assert next(stream) == 1
    with pytest.raises(RetriableError, match=r"sources\.t: the pull's child process ended early"):
        next(stream)


def test_a_parent_that_stops_reading_stops_the_child() -> None:
    def endless() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1

    stream = in_child(endless, "sources.t")
    assert next(stream) == 0
    children = _children()
    assert children
    stream.close()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def _children() -> list[int]:
    with open(f"/proc/self/task/{os.getpid()}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_driver_in_a_child_delivers_what_it_delivers_in_one_process() -> None:
    tool = Tool()
    alone = list(driver(tool).pull(None))
    apart = list(driver(Tool(), in_child=True).pull(None))
    assert apart == alone
    tool.rows["R3"] = T0 + timedelta(minutes=9, seconds=30)
    again = list(driver(tool, in_child=True).pull(alone[-1].cursor))
    assert [r.key for b in again for r in b.records] == ["R3"]
    windows = driver(Tool(), in_child=True, backfill_from=T0, backfill_parts=4,
                     backfill_workers=2, clock=lambda: T0 + timedelta(minutes=12))  # fmt: skip
    keys = sorted(r.key for b in windows.pull(None) for r in b.records)
    assert keys == sorted(f"R{n}" for n in range(10) if n not in (4, 7))


def test_a_forked_child_never_uses_the_parents_http_connections() -> None:
    service = HttpService("t", "http://tool.test", transport=httpx.MockTransport(_ok))
    parent = service.client
    assert service.client is parent

    def clients() -> Iterator[bool]:
        yield service.client is parent
        yield service.client is service.client

    assert list(in_child(clients, "sources.t")) == [False, True]
    assert service.client is parent  # the parent's own is untouched
    service.close()


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


def test_a_utc_record_keeps_its_utc_instants() -> None:
    rec = record(1, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    back = wire.unpack(wire.pack(PulledBatch([rec], None))).records[0]
    assert back.created_at.tzinfo is UTC


def test_a_host_budget_locked_by_a_parent_thread_at_the_fork_is_usable_in_the_child() -> None:
    service = HttpService("t", "http://tool.test", rate=1000, transport=httpx.MockTransport(_ok))
    budget = service.budget

    def acquire() -> Iterator[bool]:
        got = budget._lock.acquire(timeout=2)  # the parent's copy would stay held
        yield got
        if got:
            budget._lock.release()
            yield budget.paused_for() == 0.0

    with budget._lock:  # as a thread of the parent would hold it at the fork
        assert list(in_child(acquire, "sources.t")) == [True, True]
    service.close()


def test_the_child_hands_the_gil_over_sooner_and_the_parent_keeps_its_interval() -> None:
    import sys

    from connectors.kit.child import SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    assert list(in_child(lambda: iter([sys.getswitchinterval()]), "sources.t")) == [
        pytest.approx(SWITCH_INTERVAL_S)
    ]
    assert sys.getswitchinterval() == before
