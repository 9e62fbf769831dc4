"""Requests to read N open tickets' states: one read per ticket against a batch read.

``python bench/status_reads.py [N]`` (default 1000) puts N tickets in
assorted states on the local fakes (ServiceNow, Jira, GLPI, iTop through the
``rest`` source's example), then reads them as the track step does
(``_statuses`` per 500 nonconformities): once through each source's single
read, once through its batch read. It checks both answer the same statuses
and prints, per source and path, the requests the fake counted, the wall
seconds and this process's CPU seconds (the fake's server thread included).
Last line: ``requests_per_ticket=…`` of the batch paths.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.read_paths import Row, main, measure
from core.loop.track import BATCH, _statuses
from core.records import TicketStatus
from tests.utils.batch_reads import retrying_runtime

T0 = datetime(2026, 10, 29, 9, tzinfo=UTC)


class _OneByOne:
    """A source seen through its single read only (what track did before a batch read)."""

    def __init__(self, source: Any) -> None:
        self.ticket_status = source.ticket_status


def _read(source: Any, refs: list[str]) -> dict[str, Any]:
    rt = retrying_runtime({"s": source})
    found: dict[str, TicketStatus | Exception] = {}
    for start in range(0, len(refs), BATCH):
        rows = [SimpleNamespace(ticket_target="s", ticket_ref=r) for r in refs[start:][:BATCH]]
        found.update(_statuses(rt, rows))
    return {ref: (type(v).__name__, str(v)) if isinstance(v, Exception) else v
            for ref, v in found.items()}  # fmt: skip


def _measure(name: str, source: Any, refs: list[str], count: Callable[[], int]) -> Iterator[Row]:
    paths = [("one per ticket", _OneByOne(source)), ("batch", source)]
    yield from measure(name, paths, _read, refs, count)


def servicenow(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.complaints.test_read_back_glpi_servicenow import sn_source
    from tests.fakes.server import serve
    from tests.fakes.servicenow import FakeServiceNow

    fake = FakeServiceNow()
    refs = []
    for i in range(n):
        ref = fake.insert({"short_description": f"nc {i}", "correlation_id": f"qloop:{i}"})
        state = ["1", "2", "3", "6", "7", "8"][i % 6]
        if state != "1":
            fake.update(ref, T0 + timedelta(minutes=i), state=state)
        refs.append(ref)
    url = stack.enter_context(serve(fake.app()))
    src = sn_source(tmp, url)
    stack.callback(src.close)
    yield from _measure("servicenow", src, refs, lambda: sum(fake.calls.values()))


def jira(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    import mappings
    from connectors.jira_sm import JiraSource
    from core.connector import ConnectorContext
    from tests.fakes.jira import STATUSES, FakeJira, source_options
    from tests.fakes.server import serve

    fake = FakeJira(issues=n)
    keys = sorted(fake.issues, key=lambda k: int(k.rsplit("-", 1)[1]))
    for i, key in enumerate(keys):
        fake.set_status(key, list(STATUSES)[i % len(STATUSES)], T0 + timedelta(minutes=i))
    url = stack.enter_context(serve(fake.app))
    fake.server_url = url
    ctx = ConnectorContext(tmp, mappings.load("jira_sm"), sleep=lambda _: None)
    src = JiraSource("jira", source_options(url), ctx)
    stack.callback(src.close)
    yield from _measure("jira", src, keys, lambda: fake.requests)


def glpi(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.complaints.test_read_back_glpi_servicenow import glpi_source
    from tests.fakes.glpi import FakeGlpi
    from tests.fakes.server import serve

    fake = FakeGlpi()
    fake.generate(n)
    ids = sorted(fake.tickets)
    for i, tid in enumerate(ids):
        if i % 3 == 1:
            fake.close(tid, at=T0 + timedelta(minutes=i))
    url = stack.enter_context(serve(fake.app()))
    src = glpi_source(tmp, f"{url}/apirest.php")
    stack.callback(src.close)
    src.ticket_status(str(ids[0]))  # the session opened before counting
    count = lambda: sum(v for k, v in fake.calls.items() if "Session" not in k)  # noqa: E731
    yield from _measure("glpi", src, [str(t) for t in ids], count)


def itop(stack: ExitStack, n: int, tmp: Path) -> Iterator[Row]:
    from tests.connectors.rest_examples import source
    from tests.fakes.itop import PASSWORD, FakeItop
    from tests.fakes.server import serve

    fake = FakeItop()
    fake.generate(n, seed="bench", start=datetime(2026, 10, 1, 6, tzinfo=UTC), days=28)
    for key in range(1, n + 1):
        status = ["new", "assigned", "pending", "resolved", "closed", "rejected"][key % 6]
        fake.set_status(key, status, T0 + timedelta(minutes=key))
    url = stack.enter_context(serve(fake.app()))
    src = source("itop", {"ITOP_URL": url, "ITOP_PASSWORD": PASSWORD}, tmp)
    stack.callback(src.close)
    yield from _measure("rest (itop)", src, [str(k) for k in range(1, n + 1)],
                        lambda: fake.calls["rest"])  # fmt: skip


if __name__ == "__main__":
    main((servicenow, jira, glpi, itop), int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
