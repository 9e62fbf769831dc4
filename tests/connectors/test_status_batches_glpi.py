"""GLPI ticket states of many tickets read with one ``getMultipleItems`` call, on the fake.

The batch read (:meth:`GlpiSource.ticket_statuses`) must answer what one
:meth:`ticket_status` per ticket answers — same status, category and closing
time — with a call per 50 tickets instead of a ``GET /Ticket/{id}`` each; a
429 is waited out. ``getMultipleItems`` fails whole when one item is missing
(404 ``ERROR_ITEM_NOT_FOUND``): that chunk is read again by halves down to the
missing ticket, which is read alone and gets the single read's error, the others
still read by batch; a ref that is no ticket id fails as alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from connectors.glpi import writeback as glpi_writeback
from core.connector import TicketStatusBatches
from core.errors import FatalError, RetriableError
from core.loop.track import _statuses
from tests.complaints.test_read_back_glpi_servicenow import glpi_source
from tests.fakes.glpi import FakeGlpi
from tests.fakes.server import serve
from tests.utils.batch_reads import answers, assert_same, read_both, retrying_runtime

T0 = datetime(2026, 10, 29, 9, tzinfo=UTC)
MANY = "/getMultipleItems"


@pytest.fixture
def glpi() -> Iterator[tuple[FakeGlpi, str]]:
    fake = FakeGlpi()
    fake.generate(12)
    with serve(fake.app()) as url:
        yield fake, f"{url}/apirest.php"


def _refs(fake: FakeGlpi) -> list[str]:
    """Every ticket, some moved on: solved, closed, pending."""
    ids = sorted(fake.tickets)
    for n, tid in enumerate(ids):
        if n % 4 == 1:
            fake.close(tid, at=T0 + timedelta(minutes=n))
        elif n % 4 == 2 and fake.tickets[tid]["status"] not in (5, 6):
            fake.modify(tid, status=5, at=T0 + timedelta(minutes=n))
    return [str(t) for t in ids]


def _calls(fake: FakeGlpi) -> int:
    return sum(n for path, n in fake.calls.items() if "Session" not in path)


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    refs = _refs(fake)
    asked = [*refs, refs[1]]  # a ticket asked twice
    src = glpi_source(tmp_path, url)
    try:
        assert isinstance(src, TicketStatusBatches)
        src.ticket_status(refs[0])  # the session is open before counting
        fake.burst = 1  # a 429 with Retry-After first, waited out
        many, batch_calls, singles, single_calls = read_both(
            lambda: _calls(fake), src.ticket_statuses, src.ticket_status, asked
        )
    finally:
        src.close()
    assert_same(many, singles)
    assert {s.status for s in many} >= {"Solved", "Closed"}  # type: ignore[union-attr]
    closed = [s for s in many if s.status == "Closed"]  # type: ignore[union-attr]
    assert all(s.closed_at is not None for s in closed)  # type: ignore[union-attr]
    assert batch_calls == 1 + 1 and single_calls == len(asked)  # the 429, then one call


def test_a_missing_ticket_fails_alone_and_the_others_still_read(
    tmp_path: Path, glpi: tuple[FakeGlpi, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = glpi
    refs = _refs(fake)
    monkeypatch.setattr(glpi_writeback, "BULK", 5)
    asked = [*refs[:4], "999999", *refs[4:], "not-an-id"]
    src = glpi_source(tmp_path, url)
    try:
        src.ticket_status(refs[0])
        before = _calls(fake)
        many = src.ticket_statuses(asked)
        calls = _calls(fake) - before
        singles = answers(src.ticket_status, asked)
    finally:
        src.close()
    assert_same(many, singles)
    assert isinstance(many[4], FatalError) and "999999 not found" in str(many[4])
    assert isinstance(many[-1], FatalError) and "not a GLPI ticket id" in str(many[-1])
    # 13 ids in chunks of 5: the first chunk's call fails (404) and is read again by
    # halves: 1-2, then 3-4-999999 (404), 3, 4-999999 (404), 4, 999999 (404); the
    # missing ticket is read alone; the two others are one call each; the ref that is
    # no id costs no request
    assert calls == 1 + 6 + 1 + 2
    assert fake.calls[MANY] >= 3


def test_track_reads_every_state_through_one_call_and_falls_back_on_a_failing_one(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    refs = _refs(fake)
    src = glpi_source(tmp_path, url)
    rows = [SimpleNamespace(ticket_target="glpi", ticket_ref=ref) for ref in refs]
    try:
        expected = dict(zip(refs, answers(src.ticket_status, refs), strict=True))
        before = fake.calls[MANY]
        assert _statuses(retrying_runtime({"glpi": src}), rows) == expected
        assert fake.calls[MANY] - before == 1
        fake.burst = 99  # every answer a 429: the batch fails, then each single read
        found = _statuses(retrying_runtime({"glpi": src}), rows[:2])
        assert all(isinstance(found[ref], RetriableError) for ref in refs[:2])
    finally:
        fake.burst = 0
        src.close()
