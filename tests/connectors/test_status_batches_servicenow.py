"""ServiceNow ticket states of many tickets read with one ``sys_idIN`` list read, on the fake.

The batch read (:meth:`ServiceNowSource.ticket_statuses`) must answer what one
:meth:`ticket_status` per ticket answers — same status, category and closing
time, the same error for an unknown ticket or a state outside the status map —
with a request per 100 tickets instead of one per ticket; a page boundary, a
write between pages and a 429 lose nothing; a batch the instance refuses is read
ticket by ticket. End to end, the track step reads states only through batches
and changes the same rows as the single reads did.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from connectors.servicenow import tickets as sn_tickets
from core.connector import TicketStatusBatches
from core.errors import FatalError, RetriableError
from core.loop import run_once
from core.loop.track import _statuses
from core.runtime import Runtime
from core.store.models import AuditLog, Nonconformity
from tests.complaints.test_read_back_glpi_servicenow import sn_source
from tests.connectors.test_servicenow import MONTH, deployment
from tests.fakes.server import serve
from tests.fakes.servicenow import FakeServiceNow
from tests.utils.batch_reads import answers, assert_same, read_both, retrying_runtime

track_step = importlib.import_module("core.loop.track")  # the module (core.loop.track is the step)
T0 = datetime(2026, 10, 29, 12, tzinfo=UTC)
TABLE = "/api/now/table/incident"


@pytest.fixture
def sn() -> Iterator[tuple[FakeServiceNow, str]]:
    fake = FakeServiceNow()
    with serve(fake.app()) as url:
        yield fake, url


def _tickets(fake: FakeServiceNow, n: int = 12) -> list[str]:
    """Tickets in every state: new, in progress, on hold, resolved, closed, cancelled,
    and one whose state the status map does not know."""
    refs = []
    for i in range(n):
        ref = fake.insert({"short_description": f"nc {i}", "correlation_id": f"qloop:{i}"})
        state = ["1", "2", "3", "6", "7", "8", "1", "6", "99"][i % 9]
        if state != "1":
            fake.update(ref, T0 + timedelta(minutes=i), state=state)
        refs.append(ref)
    return refs


def _calls(fake: FakeServiceNow) -> int:
    return sum(fake.calls.values())


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    refs = _tickets(fake)
    unknown = "0" * 32
    asked = [*refs, unknown, refs[3]]  # an unknown ticket, a ticket asked twice
    src = sn_source(tmp_path, url)
    try:
        assert isinstance(src, TicketStatusBatches)
        many, batch_calls, singles, single_calls = read_both(
            lambda: _calls(fake), src.ticket_statuses, src.ticket_status, asked
        )
    finally:
        src.close()
    assert_same(many, singles)
    assert [s.category for s in many[:6]] == [  # type: ignore[union-attr]
        "new", "in_progress", "waiting", "resolved", "closed", "cancelled"
    ]  # fmt: skip
    assert many[3].closed_at == T0 + timedelta(minutes=3)  # type: ignore[union-attr]
    assert isinstance(many[8], FatalError) and "not in status_map" in str(many[8])
    assert isinstance(many[-2], FatalError) and many[-2].attrs.get("status") == 404
    # 1 list read + the unknown ticket read alone (its 404), against 1 per ticket
    assert batch_calls == 2 and single_calls == len(asked)
    batch = next(q for t, q in fake.queries if t == "incident" and "sys_idIN" in q["sysparm_query"])
    assert batch["sysparm_display_value"] == "false"
    assert batch["sysparm_fields"] == "sys_id,state,resolved_at,closed_at"
    assert batch["sysparm_query"].endswith("^ORDERBYsys_id")


def test_a_page_boundary_and_a_write_between_pages_lose_nothing(
    tmp_path: Path, sn: tuple[FakeServiceNow, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = sn
    refs = _tickets(fake, 8)
    monkeypatch.setattr(sn_tickets, "STATUS_PAGE", 3)
    moved: list[str] = []

    def technician(table: str, offset: int) -> None:  # resolves a ticket while qloop pages
        if offset == 3 and not moved:
            fake.now = T0 + timedelta(days=1)
            fake.update(refs[0], state="6")
            moved.append(refs[0])

    fake.paged_tables = {"incident"}
    fake.on_page = technician
    src = sn_source(tmp_path, url)
    try:
        many = src.ticket_statuses(refs)
        fake.on_page = None
        assert moved
        # the moved ticket was on the first page: read as it was then (the next run reads
        # it resolved); every other ticket as one read each answers it now
        assert_same(many[1:], answers(src.ticket_status, refs[1:]))
        assert many[0].status == "1"  # type: ignore[union-attr]
    finally:
        src.close()
    pages = [q for t, q in fake.queries if t == "incident" and "sys_idIN" in q["sysparm_query"]]
    assert len(pages) == 3  # 8 tickets, 3 a page: followed through the Link header's next


def test_ids_per_query_are_capped_and_a_429_is_waited(
    tmp_path: Path, sn: tuple[FakeServiceNow, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = sn
    refs = [r for i, r in enumerate(_tickets(fake)) if i != 8]
    monkeypatch.setattr(sn_tickets, "IDS_PER_QUERY", 5)
    src = sn_source(tmp_path, url)
    try:
        expected = answers(src.ticket_status, refs)
        fake.burst = 2
        before = _calls(fake)
        assert_same(src.ticket_statuses(refs), expected)
        assert fake.burst == 0 and _calls(fake) - before == 3 + 2  # 11 tickets: 3 chunks
    finally:
        src.close()


def test_a_batch_the_instance_refuses_is_read_ticket_by_ticket(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    refs = [r for i, r in enumerate(_tickets(fake)) if i != 8]
    src = sn_source(tmp_path, url)
    rows = [SimpleNamespace(ticket_target="sn", ticket_ref=ref) for ref in refs]
    try:
        expected = dict(zip(refs, answers(src.ticket_status, refs), strict=True))
        fake.max_url = 450  # the batch's URL is refused (414), one ticket's passes
        before = _calls(fake)
        found = _statuses(retrying_runtime({"sn": src}), rows)
        assert found == expected
        assert _calls(fake) - before == 1 + len(refs)  # the refused read, then singles
        fake.max_url = None
        fake.burst = 99  # every answer a 429: the single path's error, per ticket
        found = _statuses(retrying_runtime({"sn": src}), rows[:2])
        assert all(isinstance(found[ref], RetriableError) for ref in refs[:2])
    finally:
        fake.burst = 0
        src.close()


def _state(rt: Runtime, after: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every nonconformity row, and the audit rows after id ``after`` (without their id and
    time: an audit row's time is when it was written, after the reads, which the single
    reads make longer as the fake clock advances with each request's wait)."""
    with rt.db.session() as s:
        table = Nonconformity.__table__
        ncs = [tuple(r) for r in s.execute(select(table).order_by(table.c.id))]
        audits = [
            (a.actor, a.action, a.entity, a.entity_id, a.detail)
            for a in s.scalars(select(AuditLog).where(AuditLog.id > after).order_by(AuditLog.id))
        ]
    return ncs, audits


def test_track_reads_states_only_by_batch_and_changes_the_rows_single_reads_change(
    database_url: str, tmp_path: Path, sn: tuple[FakeServiceNow, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fake, url = sn
    fake.generate(90, seed="month", start=MONTH, days=28)
    dep = deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        assert run_once(rt).errors == []
        with rt.db.session() as s:
            ticketed = list(
                s.scalars(
                    select(Nonconformity.ticket_ref)
                    .where(Nonconformity.state == "ticketed")
                    .order_by(Nonconformity.id)
                )
            )
            last_audit = s.scalar(select(func.max(AuditLog.id))) or 0
            before = list(s.execute(select(Nonconformity.__table__)))
        assert len(ticketed) >= 6
        for n, ref in enumerate(ticketed):
            if n % 3 == 0:
                fake.update(str(ref), state="6")  # resolved
            elif n % 3 == 1:
                fake.update(str(ref), state="2")  # in progress
        fake.delete(str(ticketed[-1]))  # a ticket gone: its single read's 404, as before
        dep.clock.advance(hours=2)
        at = dep.clock.now  # both reads run at the same instant (waits advance the clock)
        fake.calls.clear()
        batch_result = track_step.track(rt)
        singles = [p for p in fake.calls if p.startswith(TABLE + "/")]
        assert singles == [TABLE + "/" + str(ticketed[-1])]  # only the deleted one alone
        assert fake.calls[TABLE] == -(-len(ticketed) // 100)
        by_batch = _state(rt, last_audit)

        with rt.db.session() as s:  # back to the rows before track
            s.execute(delete(AuditLog).where(AuditLog.id > last_audit))
            for row in before:
                s.execute(
                    update(Nonconformity)
                    .where(Nonconformity.id == row.id)
                    .values(**{k: v for k, v in row._mapping.items() if k != "id"})
                )
        monkeypatch.setattr(track_step, "TicketStatusBatches", type("Never", (), {}))
        fake.calls.clear()
        dep.clock.now = at
        single_result = track_step.track(rt)
        assert fake.calls[TABLE] == 0 and sum(fake.calls.values()) == len(ticketed)
        by_single = _state(rt, last_audit)
    finally:
        dep.close()
    assert by_batch == by_single
    assert batch_result.counts == single_result.counts
    assert batch_result.errors == single_result.errors and len(batch_result.errors) == 1
    assert batch_result.counts["closed"] == len(range(0, len(ticketed) - 1, 3))
