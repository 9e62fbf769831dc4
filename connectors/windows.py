"""Backfill helpers: disjoint time windows pulled concurrently, and page prefetch.

A first sync over years of history is slow page by page when each page
takes hundreds of milliseconds. :func:`pull_windows` splits ``[start, end)``
into disjoint windows and pulls them on a bounded pool of threads; pages
come back through a bounded queue, so memory stays flat whatever the size.
Each yielded page carries a *safe cursor*: every record updated before it
has been yielded, because every window below it is finished. Resuming from
that cursor may re-read records (the core's upsert makes that harmless)
but never skips one.

:func:`prefetch` overlaps fetching the next page of a single stream with
the consumer storing the current one.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

BACKFILL_OPTIONS_SCHEMA: dict[str, object] = {
    "backfill_from": {
        "type": "string",
        "description": "first sync only: ISO 8601 instant to pull from (none: everything)",
    },
    "backfill_parts": {
        "type": "integer",
        "minimum": 1,
        "maximum": 256,
        "default": 8,
        "description": "first sync with backfill_from: the history is cut into this many windows",
    },
    "backfill_workers": {
        "type": "integer",
        "minimum": 1,
        "maximum": 32,
        "default": 4,
        "description": "first sync with backfill_from: windows pulled at the same time",
    },
}
"""Options of a source that backfills in concurrent windows (:func:`pull_windows`)."""
_DONE = object()


def split_range(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into ``parts`` disjoint windows of (nearly) equal length."""
    if end <= start or parts <= 1:
        return [(start, end)]
    step = (end - start) / parts
    edges = [start + step * i for i in range(parts)] + [end]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


class _Stop(Exception):
    """Raised inside a worker when the consumer went away."""


class _Channel(Generic[T]):
    def __init__(self, size: int) -> None:
        self.q: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=size)
        self.stop = threading.Event()

    def put(self, index: int, item: object) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                self.q.put((index, item), timeout=0.1)
                return
            except queue.Full:
                continue


def pull_windows(
    fetch: Callable[[datetime, datetime], Iterator[list[T]]],
    start: datetime,
    end: datetime,
    *,
    parts: int = 4,
    workers: int = 4,
    queue_pages: int = 8,
) -> Iterator[tuple[list[T], datetime]]:
    """Pull ``[start, end)`` as ``parts`` windows on ``workers`` threads.

    Args:
        fetch: Pages of records updated in ``[lo, hi)``, oldest first is not
            required. It must raise, not swallow, errors.
        start: Lower bound (inclusive) of the range.
        end: Upper bound (exclusive).
        parts: Number of disjoint windows.
        workers: Windows pulled at the same time.
        queue_pages: Pages held between the threads and the consumer.

    Yields:
        ``(page, safe_cursor)``: every record updated before ``safe_cursor``
        has been yielded (it is the start of the earliest unfinished window,
        or ``end`` once all are done).

    An error in any window stops the others and is raised to the consumer;
    closing the generator stops the threads.
    """
    windows = split_range(start, end, parts)
    if len(windows) == 1 or workers <= 1:
        for lo, hi in windows:
            for page in fetch(lo, hi):
                yield page, lo
        yield [], end
        return
    chan: _Channel[T] = _Channel(queue_pages)
    next_window = iter(range(len(windows)))
    take_lock = threading.Lock()

    def work() -> None:
        while not chan.stop.is_set():
            with take_lock:
                index = next(next_window, None)
            if index is None:
                return
            lo, hi = windows[index]
            try:
                for page in fetch(lo, hi):
                    chan.put(index, page)
                chan.put(index, _DONE)
            except _Stop:
                return
            except BaseException as exc:  # handed to the consumer, which raises it
                try:
                    chan.put(index, exc)
                except _Stop:
                    return
                return

    threads = [
        threading.Thread(target=work, name=f"backfill-{i}", daemon=True)
        for i in range(min(workers, len(windows)))
    ]
    for t in threads:
        t.start()
    finished = [False] * len(windows)

    def safe_cursor() -> datetime:
        for i, done in enumerate(finished):
            if not done:
                return windows[i][0]
        return end

    try:
        remaining = len(windows)
        while remaining:
            index, item = chan.q.get()
            if item is _DONE:
                finished[index] = True
                remaining -= 1
                yield [], safe_cursor()
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item, safe_cursor()  # type: ignore[misc]
    finally:
        chan.stop.set()
        for t in threads:
            t.join(timeout=5)


def prefetch(pages: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``pages`` with up to ``depth`` items fetched ahead on a thread.

    Errors from ``pages`` are raised at the point they occurred in order;
    closing the returned generator stops the fetching thread.
    """
    chan: _Channel[T] = _Channel(max(depth, 1))

    def work() -> None:
        try:
            for item in pages:
                chan.put(0, item)
            chan.put(0, _DONE)
        except _Stop:
            return
        except BaseException as exc:  # handed to the consumer, which raises it
            try:
                chan.put(0, exc)
            except _Stop:
                return

    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            _, item = chan.q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        chan.stop.set()
        thread.join(timeout=5)
