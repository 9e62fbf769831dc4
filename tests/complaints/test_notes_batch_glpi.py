"""GLPI followups stay read one ticket per request (connectors/glpi/readback.py says why).

Its API answers no call with several tickets' followups as the single read
gets them, so the GLPI source offers no batch read: following complaints
reads each ticket's ``ITILFollowup`` sub-items, every page of them, and a
429 is waited out, as ticket by ticket.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.complaints.following import _notes_of
from core.connector import TicketNotes, TicketNotesBatches
from core.errors import FatalError
from tests.complaints.test_read_back_glpi_servicenow import glpi_source
from tests.fakes.glpi import FakeGlpi
from tests.fakes.server import serve
from tests.utils.batch_reads import retrying_runtime

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)


@pytest.fixture
def glpi() -> Iterator[tuple[FakeGlpi, str]]:
    fake = FakeGlpi()
    fake.generate(6)
    with serve(fake.app()) as url:
        yield fake, f"{url}/apirest.php"


def test_followups_are_read_a_ticket_per_request_every_page(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    fake.max_range = 2  # the server pages sub-items 2 at a time
    ids = sorted(fake.tickets)
    for n, tid in enumerate(ids):
        for k in range(n % 4):
            fake.followup(tid, f"<p>Root cause {k} of {tid}</p>", at=T0 + timedelta(hours=3 - k))
    src = glpi_source(tmp_path, url)
    try:
        assert isinstance(src, TicketNotes) and not isinstance(src, TicketNotesBatches)
        refs = [str(t) for t in ids]
        expected = {ref: src.ticket_notes(ref) for ref in refs}
        before = sum(fake.calls.values())
        fake.burst = 1
        found = _notes_of(
            retrying_runtime({"glpi": src}), [("glpi", ref) for ref in [*refs, "999999"]]
        )
        asked = sum(fake.calls.values()) - before
    finally:
        src.close()
    assert {ref: found[ref] for ref in refs} == expected
    assert [len(expected[r]) for r in refs] == [n % 4 for n in range(len(refs))]
    assert isinstance(found["999999"], FatalError)  # unknown: its 404, as alone
    # a request per page of each ticket (Content-Range gives the total: no request past
    # the end), the unknown ticket's 404 and the 429 waited out
    pages = sum(max(1, -(-len(expected[r]) // 2)) for r in refs)
    assert asked == pages + 1 + 1
