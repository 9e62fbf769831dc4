"""Requests to read N followed tickets' comments: one read per ticket against a batch read.

``python bench/notes_reads.py [N]`` (default 1000) gives N tickets 0–3
comments each on the local fakes (ServiceNow, GLPI, iTop through the
``rest`` source's example), then reads them as "follow complaints" does
(``_notes_of`` per 200 complaints): once through each source's single read,
once through its batch read when it has one. It checks both answer the same
notes and prints, per source and path, the requests the fake counted, the
wall seconds and this process's CPU seconds (the fake's server thread
included). Last line: ``requests_per_ticket=…`` of the batch paths.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.read_paths import Row, main, measure
from core.complaints.following import BATCH, _notes_of
from core.records import TicketNote
from tests.utils.batch_reads import retrying_runtime

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)


class _OneByOne:
    """A source seen through its single read only (what the loop did before a batch read)."""

    def __init__(self, source: Any) -> None:
        self.ticket_notes = source.ticket_notes


def _read(source: Any, refs: list[str]) -> dict[str, list[TicketNote] | Exception]:
    rt = retrying_runtime({"s": source})
    found: dict[str, list[TicketNote] | Exception] = {}
    for start in range(0, len(refs), BATCH):
        found.update(_notes_of(rt, [("s", ref) for ref in refs[start : start + BATCH]]))
    return found


def _measure(name: str, source: Any, refs: list[str], count: Callable[[], int]) -> Iterator[Row]:
    paths = [("one per ticket", _OneByOne(source))]
    if hasattr(source, "ticket_notes_many"):
        paths.append(("batch", source))
    yield from measure(name, paths, _read, refs, count)


def servicenow(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.complaints.test_read_back_glpi_servicenow import sn_source
    from tests.fakes.server import serve
    from tests.fakes.servicenow import FakeServiceNow

    fake = FakeServiceNow()
    fake.generate(n, seed="bench", start=datetime(2026, 10, 1, tzinfo=UTC), days=28)
    refs = sorted(fake.tables["incident"])
    for i, ref in enumerate(refs):
        for k in range(i % 4):
            fake.journal(ref, "comments" if k % 2 else "work_notes", f"note {k}", T0)
    url = stack.enter_context(serve(fake.app()))
    src = sn_source(tmp, url)
    stack.callback(src.close)
    yield from _measure("servicenow", src, refs, lambda: sum(fake.calls.values()))


def glpi(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.complaints.test_read_back_glpi_servicenow import glpi_source
    from tests.fakes.glpi import FakeGlpi
    from tests.fakes.server import serve

    fake = FakeGlpi()
    fake.generate(n)
    ids = sorted(fake.tickets)
    for i, tid in enumerate(ids):
        for k in range(i % 4):
            fake.followup(tid, f"<p>note {k}</p>", at=T0 + timedelta(minutes=k))
    url = stack.enter_context(serve(fake.app()))
    src = glpi_source(tmp, f"{url}/apirest.php")
    stack.callback(src.close)
    refs = [str(t) for t in ids]
    yield from _measure("glpi", src, refs, lambda: sum(fake.calls.values()))


def itop(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.connectors.rest_examples import source
    from tests.fakes.itop import PASSWORD, FakeItop
    from tests.fakes.server import serve

    fake = FakeItop()
    fake.generate(n, seed="bench", start=datetime(2026, 10, 1, 6, tzinfo=UTC), days=28)
    for key in range(1, n + 1):
        for k in range(key % 4):
            fake.log(key, f"note {k}", T0 + timedelta(minutes=k))
    url = stack.enter_context(serve(fake.app()))
    src = source("itop", {"ITOP_URL": url, "ITOP_PASSWORD": PASSWORD}, tmp)
    stack.callback(src.close)
    refs = [str(k) for k in range(1, n + 1)]
    yield from _measure("rest (itop)", src, refs, lambda: fake.calls["rest"])


if __name__ == "__main__":
    main((servicenow, glpi, itop), int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
