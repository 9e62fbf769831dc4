"""Writes by people: trigger a sync (embedded thread or the RQ queue), settle the review queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rq.job import Job
from sqlalchemy import func, select, update

from core.loop import rejects
from core.loop.reconcile import reconcile
from core.records import Rejected
from core.store.models import AuditLog, Incident, Match, RejectedRecord, SyncRun
from tests.api.conftest import Served, api_config, auth, serve_month
from workers import guard, queue


def _audit(served: Served, action: str) -> list[AuditLog]:
    with served.rt.db.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_operator_triggers_an_embedded_sync(served: Served) -> None:
    with served.rt.db.session() as s:
        before = s.scalar(select(func.count()).select_from(SyncRun)) or 0
    r = served.client.post("/sources/itsm/sync", headers=auth("operator"))
    assert r.status_code == 202
    body = r.json()
    assert body["mode"] == "embedded" and body["source"] == "itsm"
    assert served.app.state.syncs.wait(body["run_id"], 30)
    status = served.client.get(f"/sources/itsm/sync/{body['run_id']}", headers=auth("qa-read"))
    assert status.json()["status"] == "ok", status.json()
    assert any(line.startswith("pull itsm") for line in status.json()["results"])
    with served.rt.db.session() as s:
        assert (s.scalar(select(func.count()).select_from(SyncRun)) or 0) == before + 1
    [entry] = _audit(served, "sync.trigger")
    assert (entry.actor, entry.entity, entry.entity_id) == ("operator-user", "source", "itsm")
    assert entry.detail["run_id"] == body["run_id"]


def test_an_embedded_sync_skips_a_source_another_process_is_syncing(served: Served) -> None:
    with served.rt.db.session() as s:
        before = s.scalar(select(func.count()).select_from(SyncRun)) or 0
    with guard.lease(served.rt.db, "sync:itsm", "scheduler-on-host-b") as held_by:
        assert held_by is None
        r = served.client.post("/sources/itsm/sync", headers=auth("operator"))
        assert r.status_code == 202
        run_id = r.json()["run_id"]
        assert served.app.state.syncs.wait(run_id, 30)
    status = served.client.get(f"/sources/itsm/sync/{run_id}", headers=auth("operator")).json()
    assert status["status"] == "skipped"
    assert status["error"] == "already running as scheduler-on-host-b"
    with served.rt.db.session() as s:  # nothing pulled beside the other process
        assert (s.scalar(select(func.count()).select_from(SyncRun)) or 0) == before


def test_sync_of_an_unknown_source_is_404(served: Served) -> None:
    r = served.client.post("/sources/nope/sync", headers=auth("admin"))
    assert r.status_code == 404
    assert _audit(served, "sync.trigger") == []


@pytest.fixture
def queued(database_url: str, tmp_path: Path, redis_url: str) -> Iterator[Served]:
    path = api_config(database_url, tmp_path, extra={"redis_url": redis_url})
    yield from serve_month(path, loop=False)


def test_with_redis_the_sync_is_enqueued_for_the_workers(queued: Served, redis_url: str) -> None:
    r = queued.client.post("/sources/itsm/sync", headers=auth("admin"))
    assert r.status_code == 202
    body = r.json()
    assert body["mode"] == "queued" and body["already_running"] is False
    conn = queue.connect(redis_url)
    try:
        job = Job.fetch(body["run_id"], connection=conn)
        assert job.func == queue.run
        assert job.args == (str(queued.rt.config.path), "sync", "itsm")
        assert body["run_id"] in queue.queue_for(conn, "sync").get_job_ids()
        # a second trigger while it waits queues nothing new and names the pending job
        again = queued.client.post("/sources/itsm/sync", headers=auth("operator")).json()
        assert again["already_running"] is True and again["run_id"] == body["run_id"]
        assert len(queue.queue_for(conn, "sync").get_job_ids()) == 1
    finally:
        conn.close()
    entries = _audit(queued, "sync.trigger")
    assert [e.actor for e in entries] == ["admin-user", "operator-user"]
    assert entries[0].detail["mode"] == "queued"


def _review_items(served: Served, n: int) -> list[int]:
    """Post ``n`` answers nobody can match, reconcile, and return their review ids."""
    outcomes = [
        {
            "provider_event_id": f"orphan-{i}",
            "kind": "callback_attempt",
            "occurred_at": "2026-10-20T08:00:00+00:00",
            "reached": True,
            "confirmed": True,
            "score": 5,
        }
        for i in range(n)
    ]
    r = served.client.post(
        "/channels/hook/outcomes", json={"outcomes": outcomes}, headers=auth("channel")
    )
    assert r.status_code == 200
    reconcile(served.rt)
    items = served.client.get("/review", headers=auth("qa-read")).json()["items"]
    assert len(items) >= n
    return [i["id"] for i in items if i["response"]["provider_event_id"].startswith("orphan-")]


def test_operator_settles_the_review_queue(served: Served) -> None:
    first, second = _review_items(served, 2)
    with served.rt.db.session() as s:
        incident_id = s.scalar(select(Incident.id).limit(1))
        revision = s.scalar(select(Incident.revision).where(Incident.id == incident_id))
    r = served.client.post(
        f"/review/{first}/match",
        json={"incident_id": incident_id, "note": "customer called back"},
        headers=auth("operator"),
    )
    assert r.status_code == 200
    assert r.json() == {
        "id": first,
        "status": "matched",
        "incident_id": incident_id,
        "decided_by": "operator-user",
    }
    again = served.client.post(f"/review/{first}/dismiss", json={}, headers=auth("operator"))
    assert again.status_code == 409
    dismissed = served.client.post(f"/review/{second}/dismiss", headers=auth("admin"))
    assert dismissed.json()["status"] == "dismissed"
    with served.rt.db.session() as s:
        assert s.get(Match, first).incident_id == incident_id  # type: ignore[union-attr]
        new_rev = s.scalar(select(Incident.revision).where(Incident.id == incident_id))
    assert new_rev == (revision or 0) + 1
    entries = _audit(served, "review.resolve")
    assert sorted((e.actor, e.entity_id) for e in entries) == [
        ("admin-user", str(second)),
        ("operator-user", str(first)),
    ]
    remaining = served.client.get("/review", headers=auth("admin")).json()["items"]
    assert first not in [i["id"] for i in remaining]


def test_bad_review_requests_change_nothing(served: Served) -> None:
    [item] = _review_items(served, 1)
    missing = served.client.post(
        f"/review/{item}/match", json={"incident_id": 99999}, headers=auth("operator")
    )
    assert missing.status_code == 422 and "99999" in missing.json()["detail"]
    no_body = served.client.post(f"/review/{item}/match", json={}, headers=auth("operator"))
    assert no_body.status_code == 422
    assert no_body.json()["errors"][0]["path"] == "body.incident_id"
    unknown = served.client.post("/review/99999/dismiss", headers=auth("operator"))
    assert unknown.status_code == 404
    with served.rt.db.session() as s:
        assert s.get(Match, item).status == "review"  # type: ignore[union-attr]
    assert _audit(served, "review.resolve") == []


def test_rejected_records_are_counted_for_readers_and_listed_for_operators(
    served: Served,
) -> None:
    now = served.rt.now()
    bad = [
        Rejected("INC-1", "record INC-1: status 'Triage' is not in status_map", "status", now),
        Rejected("INC-2", "record INC-2: priority 9 is not in priority_map", "priority"),
    ]
    with served.rt.db.session() as s:
        rejects.store(s, "itsm", bad, now)
    with served.rt.db.session() as s:
        s.execute(
            update(RejectedRecord).where(RejectedRecord.key == "INC-2").values(resolved_at=now)
        )
    [itsm] = [x for x in served.client.get("/sources", headers=auth("qa-read")).json()]
    assert (itsm["name"], itsm["rejected_open"]) == ("itsm", 1)
    metrics = served.client.get("/metrics").text
    assert 'qloop_rejected_records{source="itsm"} 1.0' in metrics
    # the errors may quote a record's values: only roles that see contacts read them
    assert served.client.get("/sources/itsm/rejects", headers=auth("qa-read")).status_code == 403
    r = served.client.get("/sources/itsm/rejects", headers=auth("operator"))
    assert r.status_code == 200
    [item] = r.json()["items"]
    assert (item["key"], item["field"], item["times"]) == ("INC-1", "status", 1)
    assert "Triage" in item["error"] and item["resolved_at"] is None
    every = served.client.get("/sources/itsm/rejects?resolved=true", headers=auth("admin"))
    assert [i["key"] for i in every.json()["items"]] == ["INC-1", "INC-2"]
    missing = served.client.get("/sources/nope/rejects", headers=auth("admin"))
    assert missing.status_code == 404 and "unknown source 'nope'" in missing.json()["detail"]
