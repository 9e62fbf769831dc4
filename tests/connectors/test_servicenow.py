"""ServiceNow on its fake: first contact (SPEC §11), keyset paging, time zones, write-back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import connectors.servicenow  # noqa: F401
import mappings
from connectors.servicenow import ServiceNowSource
from core.connector import ConnectorContext
from core.loop.pull import pull
from core.records import TicketComment
from core.store.models import Incident
from tests.connectors.test_first_contact_sources import (
    incidents,
    last_run,
    record_in_ledger,
    ticket_request,
)
from tests.fakes.server import serve
from tests.fakes.servicenow import CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, FakeServiceNow
from tests.utils.loop import Deployment

MONTH = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)


def options(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": url,
        "auth": {"username": USER, "password": PASSWORD},
        "page_size": 20,
        "ticket": {"table": "incident"},
        **extra,
    }


def source(tmp_path: Path, url: str, **extra: Any) -> ServiceNowSource:
    ctx = ConnectorContext(tmp_path, mappings.load("servicenow"), sleep=lambda s: None)
    return ServiceNowSource("sn", options(url, **extra), ctx)


def deployment(
    database_url: str,
    tmp_path: Path,
    url: str,
    settings: dict[str, Any] | None = None,
    **extra: Any,
) -> Deployment:
    """A deployment reading the fake at ``url``: ``extra`` are source options, ``settings``
    further top-level settings (a ``complaints:`` block…)."""
    doc = {
        "database_url": database_url,
        "timezone": "Europe/Paris",
        "state_dir": str(tmp_path / "state"),
        "calendars": {"fr": {"timezone": "Europe/Paris", "hours": {"mon-fri": "09:00-18:00"}}},
        "sources": {"sn": {"type": "servicenow", **options(url, **extra)}},
        "channels": {"phone": {"type": "sandbox", "role": "callback", "seed": "s"}},
        "policies": {
            "default": {
                "calendar": "fr",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
        **(settings or {}),
    }
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


@pytest.fixture
def sn() -> Iterator[tuple[FakeServiceNow, str]]:
    fake = FakeServiceNow()
    fake.generate(90, seed="month", start=MONTH, days=28)
    with serve(fake.app()) as url:
        yield fake, url


def test_first_sync_reads_every_state_with_history_contact_sla_and_the_count(
    database_url: str, tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    gone = sorted(fake.tables["incident"])[:2]
    for sys_id in gone:  # deleted before qloop ever looked
        fake.delete(sys_id)
    dep = deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        first = pull(rt, "sn")
        assert first.counts["created"] == 90
        assert last_run(rt, "sn").tool_count == 90  # 88 in the table + 2 deletions
        stored = incidents(rt, "sn")
        assert all(stored[s].category == "cancelled" for s in gone)
        assert {i.category for i in stored.values()} >= {
            "resolved",
            "closed",
            "cancelled",
            "in_progress",
        }
        assert pull(rt, "sn").counts["seen"] == 0
    finally:
        dep.close()
    # the same page size's worth of incidents costs a few bulk calls, not one per incident
    assert fake.calls["/api/now/table/sys_user"] <= 2 * (90 // 20 + 2)
    wrong = [(t, p) for t, p in fake.queries if p.get("sysparm_display_value") != "false"]
    assert not wrong, wrong[:2]


def test_records_map_values_not_localised_display_values(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    resolved = next(d for d in fake.tables["incident"].values() if d["state"] == "6")
    src = source(tmp_path, url)
    try:
        records = {r.external_id: r for b in src.pull(None) for r in b.records}
    finally:
        src.close()
    rec = records[resolved["sys_id"]]
    assert rec.key == resolved["number"] and rec.category == "resolved"
    assert rec.resolved_at == datetime.strptime(
        resolved["resolved_at"], "%Y-%m-%d %H:%M:%S"
    ).replace(tzinfo=UTC)
    assert [h.category for h in rec.history][:2] == ["new", "in_progress"]
    assert rec.contact.name in {"王芳", "José Müller", "Zoë O'Brien"} and rec.contact.phone
    assert isinstance(rec.source_sla["breached"], bool) and rec.source_sla["slas"]


def test_keyset_paging_survives_updates_between_pages(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    order = sorted(
        fake.tables["incident"].values(), key=lambda d: (d["sys_updated_on"], d["sys_id"])
    )
    moved = [d["sys_id"] for d in order[:3]]

    def touch(table: str, offset: int) -> None:  # early records change while we page
        if moved:
            fake.update(moved.pop(), work_notes="edited", short_description="edited")

    fake.on_page = touch
    src = source(tmp_path, url)
    try:
        seen = {r.external_id for b in src.pull(None) for r in b.records}
    finally:
        src.close()
    assert seen == set(fake.tables["incident"])  # none skipped


def test_oauth_password_grant_and_429_retry(tmp_path: Path, sn: tuple[FakeServiceNow, str]) -> None:
    fake, url = sn
    auth = {
        "username": USER,
        "password": PASSWORD,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    src = source(tmp_path, url, auth=auth)
    fake.burst = 2
    try:
        assert src.count_in_scope() == 90
    finally:
        src.close()
    assert fake.calls["/oauth_token.do"] == 1 and fake.burst == 0


def test_own_tickets_never_ingested_and_followed_to_closure(
    database_url: str, tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    dep = deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        pull(rt, "sn")
        writer = source(tmp_path, url)
        fake.advance(60)
        some = next(iter(incidents(rt, "sn").values()))
        req = ticket_request(some.external_id, some.key, "sn")
        fake.lose_next_create = True  # created, but the answer is a 502
        ref = writer.create_ticket(req).ref  # the lost answer: found by its correlation_id
        assert writer.create_ticket(req).ref == ref  # a retry finds it too
        assert (
            sum(d["correlation_id"].startswith("qloop:") for d in fake.tables["incident"].values())
            == 1
        )
        again = pull(rt, "sn")
        assert ref not in incidents(rt, "sn") and again.counts["created"] == 0

        note = TicketComment("finding-changed-1", "The finding changed.")
        writer.comment_ticket(ref, note)
        writer.comment_ticket(ref, note)  # retried: found in the journal, not written twice
        assert (
            sum(1 for j in fake.tables["sys_journal_field"].values() if j["element_id"] == ref) == 1
        )
        assert writer.ticket_status(ref).category == "new"
        fake.advance(60)
        fake.update(ref, state="6")
        status = writer.ticket_status(ref)
        assert status.category == "resolved" and status.closed_at == fake.now.replace(microsecond=0)

        # a technician clears the correlation id: only the ledger knows it now
        fake.advance(60)
        fake.update(ref, correlation_id="")
        record_in_ledger(rt, "sn", some, ref)
        third = pull(rt, "sn")
        assert ref not in incidents(rt, "sn") and third.counts["created"] == 0
        assert last_run(rt, "sn").skipped_own == 1
        writer.close()
    finally:
        dep.close()


def test_deleted_after_the_pull_becomes_cancelled(
    database_url: str, tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    dep = deployment(database_url, tmp_path, url)
    try:
        rt = dep.open()
        pull(rt, "sn")
        victim = next(d["sys_id"] for d in fake.tables["incident"].values() if d["state"] == "2")
        fake.advance(600)
        fake.delete(victim)
        again = pull(rt, "sn")
        assert again.counts["updated"] == 1
        with rt.db.session() as s:
            inc = s.scalars(select(Incident).where(Incident.external_id == victim)).one()
            assert inc.category == "cancelled"
    finally:
        dep.close()
