"""The ``rest`` source driving Zammad from config/examples/zammad.yaml, on a documented fake."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.windows import split_range
from core.loop.pull import pull
from tests.connectors.rest_examples import deployment, source
from tests.connectors.test_first_contact_sources import incidents, last_run, ticket_request
from tests.connectors.test_ticket_follow_ups import CHANGED, GONE
from tests.fakes.server import serve
from tests.fakes.zammad import TOKEN, FakeZammad, z_time

MONTH = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def zammad() -> Iterator[tuple[FakeZammad, dict[str, str]]]:
    fake = FakeZammad()
    fake.generate(130, seed="month", start=MONTH, days=28)  # two pages and more
    with serve(fake.app()) as url:
        yield fake, {"ZAMMAD_URL": url, "ZAMMAD_TOKEN": TOKEN}


def test_first_sync_reads_every_state_with_history_and_the_count(
    database_url: str, tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    fake, env = zammad
    dep = deployment("zammad", env, database_url, tmp_path)
    try:
        rt = dep.open()
        first = pull(rt, "zammad")
        assert first.counts["created"] == 130
        assert last_run(rt, "zammad").tool_count == 130
        stored = incidents(rt, "zammad")
        assert {i.category for i in stored.values()} == {"new", "in_progress", "waiting", "closed"}
        assert pull(rt, "zammad").counts["seen"] == 0  # nothing new: nothing read twice
        closed = next(t for t in fake.tickets.values() if t["state"] == "closed")
        fake.advance(3600)
        fake.set_state(closed["id"], "open")  # reopened: the incremental pull sees it
        again = pull(rt, "zammad")
        assert again.counts["updated"] == 1
        assert incidents(rt, "zammad")[str(closed["id"])].category == "in_progress"
    finally:
        dep.close()


def test_records_carry_their_state_history(
    tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    fake, env = zammad
    src = source("zammad", env, tmp_path)
    try:
        records = {r.external_id: r for b in src.pull(None) for r in b.records}
    finally:
        src.close()
    closed = next(t for t in fake.tickets.values() if t["state"] == "closed")
    rec = records[str(closed["id"])]
    assert [h.category for h in rec.history] == ["new", "in_progress", "waiting", "closed"]
    assert rec.closed_at == datetime.fromisoformat(closed["close_at"]).replace(microsecond=0)
    assert rec.key == closed["number"] and rec.contact.email == closed["customer"]


def test_own_tickets_left_out_and_write_back_followed_to_closure(
    database_url: str, tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    fake, env = zammad
    dep = deployment("zammad", env, database_url, tmp_path)
    try:
        rt = dep.open()
        pull(rt, "zammad")
        writer = source("zammad", env, tmp_path)
        some = next(iter(incidents(rt, "zammad").values()))
        req = ticket_request(some.external_id, some.key, "zammad")
        fake.advance(60)
        fake.lose_next_create = True  # created, but the answer is a 502
        ref = writer.create_ticket(req).ref  # found by its marker, not created again
        assert writer.create_ticket(req).ref == ref
        assert sum(bool(t["qloop_key"]) for t in fake.tickets.values()) == 1
        assert fake.tickets[int(ref)]["group"] == "Quality"
        again = pull(rt, "zammad")
        assert ref not in incidents(rt, "zammad") and again.counts["created"] == 0
        assert last_run(rt, "zammad").skipped_own == 1
        assert writer.ticket_status(ref).category == "new"
        fake.advance(60)
        fake.set_state(int(ref), "closed")
        status = writer.ticket_status(ref)
        assert status.is_done and status.closed_at == fake.now.replace(microsecond=0)
        writer.close()
    finally:
        dep.close()


def test_429_with_retry_after_is_waited_out(
    tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    fake, env = zammad
    src = source("zammad", env, tmp_path)
    fake.burst = 2
    try:
        assert src.count_in_scope() == 130
        assert sum(len(b.records) for b in src.pull(None)) == 130
    finally:
        src.close()
    assert fake.burst == 0 and fake.calls["/api/v1/tickets/search"] >= 4


def test_probe_shows_the_first_page_mapped(
    tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    _, env = zammad
    src = source("zammad", env, tmp_path)
    try:
        lines = src.probe()
    finally:
        src.close()
    assert "130 records in scope (the tool's count)" in lines
    assert any(line.startswith("first page: 100 records") for line in lines)
    mapped = [line for line in lines if " -> " in line]
    assert len(mapped) == 10 and all("P" in line for line in mapped)


def test_comment_once_per_key_and_resolve_a_withdrawn_ticket_once(
    tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    """The lifecycle's ticket_comment / ticket_resolve through the example's YAML calls:
    a note carrying the comment's marker, written once even when its answer was lost; the
    withdrawn finding's ticket noted then closed, and left alone once closed."""
    fake, env = zammad
    src = source("zammad", env, tmp_path)
    try:
        ref = src.create_ticket(ticket_request("7", "31007", "zammad")).ref
        fake.lose_next_article = True  # stored, but the answer is a 502
        first = src.comment_ticket(ref, CHANGED)
        assert src.comment_ticket(ref, CHANGED) == first  # a retry: found by its marker
        (note,) = [a for a in fake.articles if a["ticket_id"] == int(ref)]
        assert note["body"].endswith(CHANGED.marker) and "minor → major" in note["body"]
        assert note["type"] == "note" and note["internal"] is True
        assert fake.tickets[int(ref)]["state"] == "new"
        assert src.resolve_ticket(ref, GONE) == "closed"
        assert src.ticket_status(ref).is_done
        assert src.resolve_ticket(ref, GONE) == "closed"  # closed already: left as it is
        notes = [a["body"] for a in fake.articles if a["ticket_id"] == int(ref)]
        assert len(notes) == 2 and notes[1].endswith(GONE.marker)
        states = [h["value_to"] for h in fake.history[int(ref)] if h["type"] == "updated"]
        assert states == ["closed"]
    finally:
        src.close()


def test_a_first_sync_with_backfill_from_reads_windows_each_ticket_once(
    tmp_path: Path, zammad: tuple[FakeZammad, dict[str, str]]
) -> None:
    """{until} in the list query: the first sync is [backfill_from, now) cut into windows read
    at once; Zammad's inclusive ranges put a ticket at a bound in one window only."""
    fake, env = zammad
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    bound = split_range(start, end, 6)[1][0]  # where window 0 ends and window 1 begins
    on_bound = next(iter(fake.tickets.values()))
    on_bound["updated_at"] = z_time(bound)  # in both inclusive ranges [A TO B]
    src = source("zammad", env, tmp_path, backfill_from="2026-10-01T00:00:00Z",
                 backfill_parts=6, backfill_workers=3)  # fmt: skip
    src.driver = replace(src.driver, clock=lambda: end)
    searches: list[str] = []
    send = src.http.request

    def spy(method: str, path: str, **kwargs: object) -> object:
        params = kwargs.get("params")
        if path.endswith("/tickets/search") and isinstance(params, dict):
            searches.append(str(params["query"]))
        return send(method, path, **kwargs)  # type: ignore[arg-type]

    src.http.request = spy  # type: ignore[method-assign]
    try:
        batches = list(src.pull(None))
    finally:
        src.close()
    ids = [r.external_id for b in batches for r in b.records]
    assert len(ids) == len(set(ids)) == 130 and str(on_bound["id"]) in ids
    windows = {q for q in searches if "TO *]" not in q}
    assert len(windows) == 6  # each window's own bounded query
    assert batches[-1].cursor is not None
