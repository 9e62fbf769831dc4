"""Backfill windows: every record once, safe cursors that never skip, errors raised, prefetch."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.windows import prefetch, pull_windows, split_range

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=10_000_000), st.integers(min_value=1, max_value=40))
@settings(max_examples=200, deadline=None)
def test_windows_are_disjoint_and_cover_the_range(seconds: int, parts: int) -> None:
    end = T0 + timedelta(seconds=seconds)
    windows = split_range(T0, end, parts)
    assert windows[0][0] == T0 and windows[-1][1] == end
    for (_, hi), (lo, _) in itertools.pairwise(windows):
        assert hi == lo
    assert all(lo < hi for lo, hi in windows)


def dataset(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=7 * i) for i in range(n)]


def fetcher(data: list[datetime], page: int, delay: float = 0.0):
    def fetch(lo: datetime, hi: datetime) -> Iterator[list[datetime]]:
        rows = [d for d in data if lo <= d < hi]
        for i in range(0, len(rows), page):
            if delay:
                time.sleep(delay)
            yield rows[i : i + page]

    return fetch


@pytest.mark.parametrize(("parts", "workers"), [(1, 1), (4, 1), (6, 3), (16, 4)])
def test_every_record_exactly_once_and_cursor_is_safe(parts: int, workers: int) -> None:
    data = dataset(1000)
    end = data[-1] + timedelta(seconds=1)
    seen: list[datetime] = []
    last_cursor = T0
    for page, cursor in pull_windows(
        fetcher(data, 37, 0.0005), T0, end, parts=parts, workers=workers, queue_pages=2
    ):
        seen.extend(page)
        assert cursor >= last_cursor  # never goes back
        last_cursor = cursor
        # safe: every record before the cursor has been yielded already
        assert {d for d in data if d < cursor} <= set(seen)
    assert sorted(seen) == data and len(seen) == len(data)
    assert last_cursor == end


def test_an_error_in_one_window_reaches_the_consumer_and_stops_the_others() -> None:
    data = dataset(500)
    end = data[-1] + timedelta(seconds=1)
    base = fetcher(data, 10, 0.001)

    def fetch(lo: datetime, hi: datetime) -> Iterator[list[datetime]]:
        if lo > T0:
            raise RuntimeError("page 3 refused")
        yield from base(lo, hi)

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="page 3 refused"):
        for _ in pull_windows(fetch, T0, end, parts=4, workers=4):
            pass
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_prefetch_keeps_order_overlaps_and_raises_in_place() -> None:
    produced: list[int] = []

    def pages() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i
        raise ValueError("after five")

    got: list[int] = []
    with pytest.raises(ValueError, match="after five"):
        for item in prefetch(pages(), depth=1):
            # the next page is fetched while this one is "stored"
            deadline = time.monotonic() + 5
            while len(produced) < min(item + 2, 5) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(produced) >= min(item + 2, 5)
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_closing_prefetch_early_stops_the_thread() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            i += 1
            yield i

    stream = prefetch(endless(), depth=2)
    assert next(stream) == 1
    stream.close()
    time.sleep(0.3)
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
