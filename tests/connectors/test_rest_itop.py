"""The ``rest`` source driving iTop from config/examples/itop.yaml, on a documented fake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import FatalError
from core.loop.pull import pull
from tests.connectors.rest_examples import deployment, source
from tests.connectors.test_first_contact_sources import incidents, last_run, ticket_request
from tests.connectors.test_ticket_follow_ups import CHANGED, GONE
from tests.fakes.itop import PASSWORD, ZONE, FakeItop
from tests.fakes.server import serve

MONTH = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def itop() -> Iterator[tuple[FakeItop, dict[str, str]]]:
    fake = FakeItop()
    fake.generate(120, seed="month", start=MONTH, days=28)
    with serve(fake.app()) as url:
        yield fake, {"ITOP_URL": url, "ITOP_PASSWORD": PASSWORD}


def test_first_sync_complete_with_the_count_then_incremental(
    database_url: str, tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    dep = deployment("itop", env, database_url, tmp_path)
    try:
        rt = dep.open()
        first = pull(rt, "itop")
        assert first.counts["created"] == 120
        assert last_run(rt, "itop").tool_count == 120
        stored = incidents(rt, "itop")
        assert {i.category for i in stored.values()} == {
            "new", "in_progress", "waiting", "resolved", "closed",
        }  # fmt: skip
        assert pull(rt, "itop").counts["created"] == 0
        fake.advance(3600)
        fake.set_status(7, "resolved")
        again = pull(rt, "itop")
        assert again.counts["created"] == 0 and again.counts["updated"] >= 1
        assert incidents(rt, "itop")["7"].category == "resolved"
    finally:
        dep.close()
    # the history is read once per page (objkey IN …), never once per request
    assert fake.calls["core/get"] < 40


def test_server_zone_instants_and_history(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    try:
        records = {r.external_id: r for b in src.pull(None) for r in b.records}
    finally:
        src.close()
    closed = next(r for r in fake.objects["UserRequest"].values() if r["status"] == "closed")
    rec = records[closed["id"]]
    local = datetime.strptime(closed["close_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZONE)
    assert rec.closed_at == local.astimezone(UTC)  # Paris wall time, stored UTC
    assert [h.category for h in rec.history] == [
        "new", "in_progress", "waiting", "resolved", "closed",
    ]  # fmt: skip
    assert rec.key == closed["ref"] and rec.contact.name == closed["caller_id_friendlyname"]


def test_own_tickets_left_out_and_write_back(
    database_url: str, tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    dep = deployment("itop", env, database_url, tmp_path)
    try:
        rt = dep.open()
        pull(rt, "itop")
        writer = source("itop", env, tmp_path)
        some = next(iter(incidents(rt, "itop").values()))
        req = ticket_request(some.external_id, some.key, "itop")
        fake.advance(60)
        fake.lose_next_create = True
        ref = writer.create_ticket(req).ref
        assert writer.create_ticket(req).ref == ref
        assert sum("qloop:" in r["title"] for r in fake.objects["UserRequest"].values()) == 1
        again = pull(rt, "itop")
        assert ref not in incidents(rt, "itop") and again.counts["created"] == 0
        assert last_run(rt, "itop").skipped_own == 1
        assert writer.ticket_status(ref).category == "new"
        fake.advance(60)
        fake.set_status(int(ref), "closed")
        status = writer.ticket_status(ref)
        assert status.is_done and status.closed_at == fake.now.replace(microsecond=0)
        writer.close()
    finally:
        dep.close()


def test_429_waited_out_and_an_error_code_is_not_an_empty_page(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    fake.burst = 2
    try:
        assert src.count_in_scope() == 120
    finally:
        src.close()
    assert fake.burst == 0
    wrong = source("itop", {**env, "ITOP_PASSWORD": "nope"}, tmp_path)
    try:
        with pytest.raises(FatalError, match="Invalid login"):
            list(wrong.pull(None))
    finally:
        wrong.close()


def test_comment_once_per_key_in_the_public_log_and_no_resolve_configured(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    try:
        ref = src.create_ticket(ticket_request("3", "R-000003", "itop")).ref
        first = src.comment_ticket(ref, CHANGED)
        assert first == CHANGED.marker  # iTop's log entries have no id: the marker names it
        assert src.comment_ticket(ref, CHANGED) == first  # a retry: found in the log
        (entry,) = fake.objects["UserRequest"][int(ref)]["public_log"]
        assert entry["message"].endswith(CHANGED.marker) and "minor → major" in entry["message"]
        with pytest.raises(FatalError, match=r"sources\.itop\.ticket\.resolve: not configured"):
            src.resolve_ticket(ref, GONE)
    finally:
        src.close()
