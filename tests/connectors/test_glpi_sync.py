"""The GLPI connector against the fake GLPI: the loop, boundaries, storms, backfill, tickets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import connectors.glpi  # noqa: F401  (registers the type)
import mappings
from connectors.glpi import GlpiSource
from connectors.glpi.search import search_page, window
from core.connector import ConnectorContext
from core.errors import FatalError
from core.loop.pull import pull
from core.records import Category, TicketRequest
from core.store.models import Incident, StatusEvent
from tests.fakes.glpi import APP_TOKEN, USER_TOKEN, FakeGlpi
from tests.fakes.server import serve
from tests.utils.loop import Deployment

CATEGORY = {1: "new", 2: "in_progress", 3: "in_progress", 4: "waiting", 5: "resolved", 6: "closed"}


@pytest.fixture
def fake() -> Iterator[tuple[FakeGlpi, str]]:
    glpi = FakeGlpi()
    glpi.generate(24)
    with serve(glpi.app()) as url:
        yield glpi, f"{url}/apirest.php"


def options(url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": url, "app_token": APP_TOKEN, "user_token": USER_TOKEN,
            "server_timezone": "Europe/Paris", "page_size": 5, **extra}  # fmt: skip


def make_source(tmp_path: Path, url: str, **extra: Any) -> GlpiSource:
    ctx = ConnectorContext(state_dir=tmp_path, mapping=mappings.load("glpi"), sleep=lambda s: None)
    return GlpiSource("glpi", options(url, **extra), ctx)


def deployment(database_url: str, tmp_path: Path, url: str) -> Deployment:
    doc = {
        "database_url": database_url,
        "timezone": "Europe/Paris",
        "state_dir": str(tmp_path / "state"),
        "calendars": {"fr": {"timezone": "Europe/Paris", "hours": {"mon-fri": "09:00-18:00"}}},
        "sources": {"glpi": {"type": "glpi", **options(url)}},
        "channels": {"phone": {"type": "sandbox", "role": "callback", "seed": "g"}},
        "policies": {
            "default": {
                "calendar": "fr",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
    }
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


def stored(rt: Any) -> dict[str, tuple[Incident, list[tuple[datetime, str]]]]:
    with rt.db.session() as s:
        out = {}
        for inc in s.scalars(select(Incident)):
            events = s.scalars(
                select(StatusEvent)
                .where(StatusEvent.incident_id == inc.id)
                .order_by(StatusEvent.seq)
            )
            history = [(e.at.replace(tzinfo=UTC), e.category) for e in events]
            s.expunge(inc)
            out[inc.external_id] = (inc, history)
        return out


def assert_matches_truth(rt: Any, glpi: FakeGlpi) -> None:
    incidents = stored(rt)
    assert set(incidents) == {str(t) for t in glpi.tickets}
    for ticket_id, truth in glpi.truth.items():
        _, history = incidents[str(ticket_id)]
        assert history == [(at.replace(microsecond=0), CATEGORY[s]) for at, s in truth], ticket_id


def test_loop_syncs_then_catches_boundary_updates_through_storms(
    database_url: str, tmp_path: Path, fake: tuple[FakeGlpi, str]
) -> None:
    glpi, url = fake
    dep = deployment(database_url, tmp_path, url)
    rt = dep.open()
    try:
        first = pull(rt, "glpi")
        assert first.counts["created"] == 24 and first.counts["seen"] == 24
        assert_matches_truth(rt, glpi)
        incidents = stored(rt)
        inc, _ = incidents["1"]  # solved in the hour repeated at the end of DST
        assert inc.title == "VPN coupe toutes les 10 min #1"
        assert inc.contact_name == "娜 李" and inc.contact_phone == "+86 139 0000 1234"
        assert inc.resolved_at.replace(tzinfo=UTC) == datetime(2026, 10, 25, 1, 20, tzinfo=UTC)
        assert incidents["3"][0].title == "Can't open O'Brien's share #3"
        assert incidents["5"][0].contact_email == "anonyme@example.fr"
        sla = incidents["4"][0].source_sla
        assert sla["waiting_duration_s"] > 0 and sla["resolution_met"] is True

        # updates on the watermark second: the last ticket read changes again within
        # its second, another one commits late with the same date_mod, a third
        # inside the overlap window; meanwhile 429 storms and an expired session
        newest = max(glpi.truth, key=lambda t: glpi.truth[t][-1][0])
        second = glpi.truth[newest][-1][0]
        others = [t for t in glpi.tickets if t != newest and glpi.tickets[t]["status"] == 2]
        glpi.modify(newest, name="Renamed within the same second", at=second)
        glpi.modify(others[0], status=4, at=second)
        glpi.modify(others[1], status=5, at=second - timedelta(minutes=3))
        glpi.expire_sessions()
        glpi.burst = 6
        again = pull(rt, "glpi")
        assert again.counts["seen"] == 3 and again.counts["updated"] == 3, again.counts
        assert again.counts["retries"] >= 1 and glpi.burst == 0
        assert_matches_truth(rt, glpi)
        assert stored(rt)[str(newest)][0].title == "Renamed within the same second"

        quiet = pull(rt, "glpi")
        assert quiet.counts["seen"] == 0
    finally:
        dep.close()


def test_backfill_windows_deliver_every_ticket_exactly_once(
    tmp_path: Path, fake: tuple[FakeGlpi, str]
) -> None:
    glpi, url = fake
    src = make_source(tmp_path, url, backfill_from="2026-10-20T00:00:00+00:00",
                      backfill_parts=6, backfill_workers=3, page_size=3)  # fmt: skip
    ids: list[str] = []
    cursor = None
    for batch in src.pull(None):
        ids.extend(r.external_id for r in batch.records)
        cursor = batch.cursor
    assert sorted(ids, key=int) == [str(t) for t in sorted(glpi.tickets)]
    assert [r for b in src.pull(cursor) for r in b.records] == []
    glpi.advance(60)
    glpi.modify(7, status=6)
    assert [r.external_id for b in src.pull(cursor) for r in b.records] == ["7"]
    src.close()


def test_nonconformity_ticket_created_once_then_followed_to_closure(
    tmp_path: Path, fake: tuple[FakeGlpi, str]
) -> None:
    glpi, url = fake
    src = make_source(tmp_path, url, ticket={"entity": 1, "urgency": 4, "category": 2})
    raised = datetime(2026, 10, 28, 9, 0, tzinfo=UTC)
    ticket = TicketRequest(
        "qloop:glpi:4:callback_missed@2026-10-26T20:02:44+00:00", "[QA] callback_missed on 4",
        "Callback missed.\n\nRectify & close.", "4", "4", "callback_missed", "major",
        raised, raised + timedelta(days=14), labels=("qloop",),
    )  # fmt: skip
    glpi.lose_next_create = True  # created, but the answer is lost: found, not made twice
    ref = src.create_ticket(ticket)
    assert src.create_ticket(ticket) == ref  # a retry of the whole create (outbox)
    created = [t for t in glpi.tickets.values() if "callback_missed@" in t["name"]]
    assert len(created) == 1 and str(created[0]["id"]) == ref.ref
    assert created[0]["entities_id"] == 1 and created[0]["urgency"] == 4
    assert "Rectify &amp;amp; close" in created[0]["content"]  # escaped once by us, once by GLPI
    assert [(k["tickets_id_1"], k["tickets_id_2"]) for k in glpi.links] == [(int(ref.ref), 4)]
    status = src.ticket_status(ref.ref)
    assert status.category == Category.NEW and not status.is_done
    glpi.advance(3600)
    glpi.close(int(ref.ref))
    done = src.ticket_status(ref.ref)
    assert done.is_done and done.status == "Closed" and done.closed_at == glpi.now
    with pytest.raises(FatalError, match="not found"):
        src.ticket_status("999999")
    src.close()


def test_probe_reports_the_session_and_names_missing_rights(
    tmp_path: Path, fake: tuple[FakeGlpi, str]
) -> None:
    glpi, url = fake
    sources = [make_source(tmp_path, url) for _ in range(3)]
    sources[2] = make_source(tmp_path, url, user_token="nope")
    try:
        lines = sources[0].probe()
        assert "logged in as glpi-api" in lines[1]
        assert lines[-1] == "24 tickets in scope (every status; 0 in the trash)"
        glpi.deny_tickets = True
        with pytest.raises(FatalError, match="lacks a right"):
            sources[1].probe()
        with pytest.raises(FatalError, match="user_token is refused") as err:
            sources[2].probe()
        assert "nope" not in str(err.value) and USER_TOKEN not in str(err.value)
    finally:
        for src in sources:
            src.close()


def test_a_page_costs_the_search_plus_a_constant_number_of_bulk_calls(tmp_path: Path) -> None:
    """Logs come by getMultipleItems, requesters by option 4 + one user search: no Log,
    User or UserEmail call per ticket; per-item calls only where no bulk form exists."""
    glpi = FakeGlpi()
    glpi.generate(120)
    with serve(glpi.app()) as url:
        src = make_source(tmp_path, f"{url}/apirest.php", page_size=40)
        try:
            batches = list(src.pull(None))
        finally:
            src.close()
    records = [r for b in batches for r in b.records]
    assert len(records) == 120
    calls = glpi.calls
    per_ticket = Counter(p.rsplit("/", 1)[-1] for p in calls if p.startswith("/Ticket/"))
    assert per_ticket["Log"] == 0
    assert not [p for p in calls if p.startswith("/User/")]
    # 3 live pages of 40 (+ the trash's empty one): per page one getMultipleItems of the
    # tickets with their logs and one of the solutions the logs name (40 fit one call);
    # the five requesters are searched once per pull
    assert calls["/getMultipleItems"] == 3 * 2
    assert calls["/search/User"] == 1
    assert per_ticket["ITILSolution"] == 0
    anonymous = [t for t in glpi.tickets if t % 11 == 5]  # only an alternative_email
    assert per_ticket["Ticket_User"] == len(anonymous)  # the one per-item fallback left
    bulk = calls["/search/Ticket"] + calls["/getMultipleItems"] + calls["/search/User"]
    per_item = len(anonymous)
    assert sum(calls.values()) == bulk + per_item + calls["/initSession"] + calls["/killSession"]
    assert sum(calls.values()) < 40  # was 4 calls a ticket and 2 a requester (≥ 490)


def test_bulk_reads_build_the_same_raw_records_as_per_item_reads(
    fake: tuple[FakeGlpi, str], tmp_path: Path
) -> None:
    glpi, url = fake
    glpi.modify(3, status=2)  # reopened: its old solution is no longer in force
    src = make_source(tmp_path, url)
    try:
        page = search_page(src.session, window(None, None), 0, 100)
        rows = page.rows
        assert len(rows) == 24 and all("requesters" in r for r in rows)
        alone = {r["id"]: src.puller.reader.build(r) for r in rows}
        src.puller.reader.forget_users()
        src.puller.reader.prefetch(rows)
        bulk = {r["id"]: src.puller.reader.build(r) for r in rows}
    finally:
        src.close()
    for ticket_id, raw in alone.items():
        assert bulk[ticket_id] == raw, ticket_id
    reopened = [t for t in (5, 12, 19) if alone[t]["status"] == 5]  # solved, reopened, solved
    assert reopened and all(alone[t]["solution"]["status"] == 2 for t in reopened)
    assert glpi.calls["/getMultipleItems"] == 2  # the page's tickets, then their solutions
    assert bulk[2]["requester"]["email"] == "jose@example.fr" and bulk[2]["log"]


def test_a_refused_bulk_read_falls_back_to_per_item_calls(
    fake: tuple[FakeGlpi, str], tmp_path: Path
) -> None:
    """getMultipleItems fails whole when one item is gone: that chunk is read per item."""
    glpi, url = fake
    src = make_source(tmp_path, url)
    try:
        rows = search_page(src.session, window(None, None), 0, 100).rows
        reader = src.puller.reader
        assert reader.bulk_logs([1, 2, 99_999]) == ({}, {})  # 99999 does not exist: a 404
        fallback = reader.build(rows[1])  # nothing prefetched: its log is read per item
        reader.prefetch(rows[:1])
        raw = reader.build(rows[0])
    finally:
        src.close()
    assert raw["log"] and glpi.calls[f"/Ticket/{rows[0]['id']}/Log"] == 0
    assert fallback["log"] and glpi.calls[f"/Ticket/{rows[1]['id']}/Log"] == 1
