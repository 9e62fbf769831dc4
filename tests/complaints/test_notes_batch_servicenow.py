"""ServiceNow journal entries of many tickets read in one ``element_idIN`` query, on the fake.

The batch read (:meth:`ServiceNowSource.ticket_notes_many`) must answer what
one :meth:`ticket_notes` per ticket answers — same notes, order, text and
times, the same error for an unknown ticket — with a request per 100 tickets
instead of two per ticket; a page boundary, a write between pages and a 429
lose nothing; a batch the instance refuses is read ticket by ticket.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.servicenow import readback as sn_readback
from core.complaints.following import NOTICE, _notes_of
from core.connector import TicketNotesBatches
from core.errors import FatalError, RetriableError
from core.loop import run_once
from core.store.models import Complaint, OutboxItem
from tests.complaints.test_read_back_glpi_servicenow import sn_source
from tests.connectors.test_servicenow import deployment
from tests.fakes.server import serve
from tests.fakes.servicenow import FakeServiceNow
from tests.utils.batch_reads import read_both, retrying_runtime
from tests.workers.test_report_webhook import SECRET

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
HOOK = "http://127.0.0.1:9/complaints"  # notices are only queued here (the step's part)
JOURNAL = "/api/now/table/sys_journal_field"


@pytest.fixture
def sn() -> Iterator[tuple[FakeServiceNow, str]]:
    fake = FakeServiceNow()
    fake.generate(12, seed="batch", start=datetime(2026, 10, 1, tzinfo=UTC), days=20)
    with serve(fake.app()) as url:
        yield fake, url


def _write_notes(fake: FakeServiceNow) -> list[str]:
    """Incidents with 0, 1, 2 … journal entries (comments, work notes, one of another
    element), entries at the same instant, and an HTML-free text with spaces to strip."""
    refs = sorted(fake.tables["incident"])
    for n, ref in enumerate(refs):
        for k in range(n % 4):
            element = "comments" if k % 2 else "work_notes"
            fake.journal(ref, element, f"  note {k} of {n}: 根因 {k}  ", T0 + timedelta(minutes=k))
        fake.journal(ref, "approval_history", f"not a comment {n}", T0)
    fake.journal(refs[1], "comments", "same instant", T0)  # ordered by sys_id then
    return refs


def _calls(fake: FakeServiceNow) -> int:
    return sum(fake.calls.values())


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    refs = _write_notes(fake)
    unknown = "0" * 32
    asked = [*refs, unknown, refs[2]]  # an unknown ticket, a ticket asked twice
    src = sn_source(tmp_path, url)
    try:
        assert isinstance(src, TicketNotesBatches)
        many, batch_calls, singles, single_calls = read_both(
            lambda: _calls(fake), src.ticket_notes_many, src.ticket_notes, asked
        )
    finally:
        src.close()
    assert many[:-2] == singles[:-2] and many[-1] == singles[-1]
    assert [len(n) for n in many[:4]] == [0, 2, 2, 3]  # type: ignore[arg-type]
    assert many[1][0].text == "same instant" or many[1][1].text == "same instant"  # type: ignore[index]
    assert isinstance(many[-2], FatalError) and isinstance(singles[-2], FatalError)
    assert str(many[-2]) == str(singles[-2]) and many[-2].attrs.get("ref") == unknown
    # 1 table read + 1 journal query + the unknown ticket read alone (its 404), against
    # 2 per ticket read alone (its record, then its journal; 1 for the unknown one)
    assert batch_calls == 3 and single_calls == 2 * len(asked) - 1
    queries = [q for q in fake.queries if q[0] == "sys_journal_field"]
    batch = next(q for _, q in queries if "element_idIN" in q["sysparm_query"])
    assert batch["sysparm_display_value"] == "false" and "element_id" in batch["sysparm_fields"]
    assert batch["sysparm_query"].endswith("^ORDERBYsys_created_on^ORDERBYsys_id")


def test_a_page_boundary_and_a_write_between_pages_lose_nothing(
    tmp_path: Path, sn: tuple[FakeServiceNow, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = sn
    refs = _write_notes(fake)
    monkeypatch.setattr(sn_readback, "PAGE", 2)  # a boundary inside a ticket's entries
    written: list[str] = []

    def technician(table: str, offset: int) -> None:  # writes while qloop pages
        if offset == 2 and not written:
            fake.now = T0 + timedelta(days=1)
            written.append(fake.journal(refs[5], "comments", "written meanwhile"))

    fake.paged_tables = {"sys_journal_field"}
    fake.on_page = technician
    src = sn_source(tmp_path, url)
    try:
        many = src.ticket_notes_many(refs)
        fake.on_page = None
        assert written
        assert many == [src.ticket_notes(ref) for ref in refs]
    finally:
        src.close()
    assert [n.text for n in many[5]][-1] == "written meanwhile"  # type: ignore[union-attr]
    pages = [q for t, q in fake.queries if t == "sys_journal_field" and "element_idIN" in
             q["sysparm_query"]]  # fmt: skip
    assert len(pages) > 5  # followed through the Link header's next pages


def test_ids_per_query_are_capped_so_the_url_stays_short(
    tmp_path: Path, sn: tuple[FakeServiceNow, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = sn
    refs = _write_notes(fake)
    monkeypatch.setattr(sn_readback, "IDS_PER_QUERY", 5)
    src = sn_source(tmp_path, url)
    try:
        before = _calls(fake)
        many = src.ticket_notes_many(refs)
        assert _calls(fake) - before == 2 * 3  # 12 tickets: 3 chunks, 2 requests each
        assert many == [src.ticket_notes(ref) for ref in refs]
    finally:
        src.close()


def test_a_429_with_retry_after_is_waited_and_the_batch_completes(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    refs = _write_notes(fake)
    src = sn_source(tmp_path, url)
    try:
        expected = [src.ticket_notes(ref) for ref in refs]
        fake.burst = 2
        assert src.ticket_notes_many(refs) == expected
        assert fake.burst == 0
    finally:
        src.close()


def test_a_batch_the_instance_refuses_is_read_ticket_by_ticket(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    refs = _write_notes(fake)
    src = sn_source(tmp_path, url)
    try:
        expected = {ref: src.ticket_notes(ref) for ref in refs}
        fake.max_url = 450  # the batch's URL is refused (414), one ticket's passes
        before = _calls(fake)
        found = _notes_of(retrying_runtime({"sn": src}), [("sn", ref) for ref in refs])
        assert found == expected
        assert _calls(fake) - before == 1 + 2 * len(refs)  # the refused query, then singles
        fake.max_url = None
        fake.burst = 99  # every answer a 429: the single path's error, per ticket
        found = _notes_of(retrying_runtime({"sn": src}), [("sn", ref) for ref in refs[:2]])
        assert all(isinstance(found[ref], RetriableError) for ref in refs[:2])
    finally:
        fake.burst = 0
        src.close()


def test_complaints_follow_their_servicenow_tickets_with_batch_reads_notices_once(
    database_url: str, tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    """End to end: flagged incidents become complaints with tickets in ServiceNow; their
    root causes come back through one journal query per run, never one per ticket; each
    complaint's notice is queued once however often the step runs."""
    fake, url = sn
    flagged = sorted(fake.tables["incident"])[:3]
    for ref in flagged:
        fake.update(ref, category="complaint")
    notify = [{"via": "webhook", "to": [HOOK], "secret": SECRET}]
    dep = deployment(
        database_url,
        tmp_path,
        url,
        {"complaints": {"deadline": "60bd", "notify": notify}},
        backfill_from="2026-10-01T00:00:00Z",
        mapping={"complaint": {"flag": {"field": "category", "equals": "complaint"}}},
    )
    try:
        rt = dep.open()
        assert run_once(rt).errors == []
        with rt.db.session() as s:
            found = list(s.scalars(select(Complaint).order_by(Complaint.id)))
        assert len(found) == 3 and all(c.ticket_ref for c in found)
        for n, c in enumerate(found):
            assert c.ticket_ref is not None
            fake.journal(c.ticket_ref, "work_notes", f"Root cause: 证书 {n} 过期", fake.now)
        fake.queries.clear()
        for _ in range(2):
            dep.clock.advance(hours=1)
            assert run_once(rt).errors == []
        journal = [q for t, q in fake.queries if t == "sys_journal_field"]
        assert journal and all("element_idIN" in q["sysparm_query"] for q in journal)
        with rt.db.session() as s:
            causes = [c.root_cause for c in s.scalars(select(Complaint).order_by(Complaint.id))]
            notices = list(
                s.scalars(select(OutboxItem.idempotency_key).where(OutboxItem.kind == NOTICE))
            )
        assert causes == [f"证书 {n} 过期" for n in range(3)]
        assert len(notices) == len(set(notices)) == 3  # one per complaint, never twice
    finally:
        dep.close()
