"""What bench/notes_reads.py and bench/status_reads.py share: each reads the same tickets
through a source's single read and through its batch read, as a loop step does, and
prints per source and path the requests the fake counted, the wall seconds and this
process's CPU seconds (the fake's server thread included)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

Row = tuple[str, str, int, float, float]
"""source, path ("one per ticket" or "batch"), requests, wall s, CPU s."""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    name: str,
    paths: list[tuple[str, Any]],
    read: Callable[[Any, list[str]], Any],
    refs: list[str],
    count: Callable[[], int],
) -> Iterator[Row]:
    """``read(seen_as, refs)`` for each (path, seen_as), timed and counted; with a batch
    path, its answers must be those of the single reads."""
    results = {}
    for path, seen_as in paths:
        before, wall, cpu0 = count(), time.perf_counter(), cpu()
        results[path] = read(seen_as, refs)
        yield name, path, count() - before, time.perf_counter() - wall, cpu() - cpu0
    if len(results) == 2:
        assert results["batch"] == results["one per ticket"], f"{name}: batch differs"


def main(benches: tuple[Callable[[ExitStack, int, Path], Iterator[Row]], ...], n: int) -> None:
    """Run each bench on ``n`` tickets, print its rows, then ``requests_per_ticket=…`` of
    the batch paths."""
    rows = []
    with TemporaryDirectory() as tmp, ExitStack() as stack:
        for bench in benches:
            for row in bench(stack, n, Path(tmp)):
                rows.append(row)
                name, path, requests, wall, used = row
                print(f"{name:12} {path:15} {requests:6d} requests {wall:6.2f} s {used:6.2f} CPU s")
    batch = [r for r in rows if r[1] == "batch"]
    per = " ".join(f"{name}:{requests / n:.3f}" for name, _, requests, _, _ in batch)
    print(f"tickets={n} requests_per_ticket={per}")
