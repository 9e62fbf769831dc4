"""The loop's serial stages split across workers, on PostgreSQL.

``dispatch-part``, ``raise-part`` and ``track-part`` run one job per partition
``k/n`` under its own lease; ``sync`` plans its own source's incidents and
``collect`` reconciles its own channel's responses. Run at once — and raced
by a second run of the same partition — they send nothing twice, lose
nothing, and leave the rows the whole steps leave.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from connectors.sandbox.channel import SandboxChannel
from connectors.sandbox.source import SandboxSource
from core.conf import load_config
from core.loop import collect, evaluate, plan, pull, push, raise_nonconformities, reconcile
from core.loop.common import StepResult
from core.runtime import Runtime, open_runtime
from core.store.models import (
    AuditLog,
    CallbackTask,
    ComplianceRecord,
    Incident,
    Match,
    Nonconformity,
    NonconformityEvent,
    OutboxItem,
    Response,
)
from tests.utils.loop import FakeClock, sandbox_config
from tests.utils.partitions import answered, at_once, job, table_rows
from workers import jobs


def _count_sends(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every message and ticket the sandbox remotes are asked to take, by key."""
    sent: Counter[str] = Counter()
    lock = threading.Lock()

    def counted(cls: type[Any], method: str, key: Callable[[Any], str], many: bool) -> None:
        plain = getattr(cls, method)

        def wrapper(self: Any, arg: Any, *rest: Any) -> Any:
            with lock:
                sent.update(key(a) for a in (arg if many else [arg]))
            return plain(self, arg, *rest)

        monkeypatch.setattr(cls, method, wrapper)

    counted(SandboxChannel, "send", lambda m: m.idempotency_key, many=False)
    counted(SandboxChannel, "send_many", lambda m: m.idempotency_key, many=True)
    counted(SandboxSource, "create_ticket", lambda t: t.dedup_key, many=False)
    counted(SandboxSource, "create_tickets", lambda t: t.dedup_key, many=True)
    return sent


def test_dispatch_parts_racing_each_other_and_a_whole_push_send_each_item_once(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=120, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    pull(rt, "itsm")
    plan(rt)
    with rt.db.session() as s:
        keys = set(s.scalars(select(OutboxItem.idempotency_key)))
    assert len(keys) > 50
    sent = _count_sends(monkeypatch)

    summaries = at_once(
        job(path, "dispatch-part", "0/2"),
        job(path, "dispatch-part", "0/2"),  # the same partition again: its lease
        job(path, "dispatch-part", "1/2"),
        lambda: push(rt, partition=(0, 2)),  # no lease: only the claim keeps it apart
        lambda: push(rt, partition=(1, 2)),
        lambda: push(rt),  # a whole dispatch at the same time
    )

    assert set(sent) == keys  # nothing lost…
    assert set(sent.values()) == {1}  # …nothing sent twice
    with rt.db.session() as s:
        states = Counter(s.scalars(select(OutboxItem.state)))
    assert states == Counter({"sent": len(keys)})
    assert all(
        str(x).startswith(("dispatch-part:", "skipped dispatch-part:0/2")) for x in summaries[:3]
    )


def test_dispatch_part_keeps_a_ticket_and_its_comments_in_one_partition(
    postgres_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=80)
    clock = FakeClock()
    rt = seeded_runtime(path, clock)
    answered(rt)
    evaluate(rt)
    raise_nonconformities(rt)
    with rt.db.session() as s:
        s.execute(delete(OutboxItem).where(OutboxItem.kind != "ticket"))
        nc_id = s.scalars(select(Nonconformity.id).order_by(Nonconformity.id)).first()
        assert nc_id is not None
        ticket = s.scalars(
            select(OutboxItem).where(OutboxItem.kind == "ticket", OutboxItem.entity_id == nc_id)
        ).one()
        s.add(
            OutboxItem(
                kind="ticket_comment",
                target=ticket.target,
                entity_id=nc_id,
                idempotency_key=f"comment:{nc_id}:2",
                payload={"text": "severity: minor → major"},
                state="pending",
                next_attempt_at=rt.now(),
                created_at=rt.now(),
            )
        )
    k = nc_id % 2
    other = push(rt, partition=(1 - k, 2))
    assert other.counts["sent_ticket"] > 0
    with rt.db.session() as s:  # not its partition: neither the ticket nor its comment
        query = select(OutboxItem.kind, OutboxItem.state).where(OutboxItem.entity_id == nc_id)
        states = {kind: state for kind, state in s.execute(query)}
    assert states == {"ticket": "pending", "ticket_comment": "pending"}
    mine = push(rt, partition=(k, 2))
    assert mine.counts["sent_ticket"] > 0
    # the comment waits for its ticket (created in this push), as in a whole push
    clock.advance(hours=1)
    assert push(rt, partition=(k, 2)).counts["sent_ticket_comment"] == 1


def _raised(rt: Runtime) -> dict[str, Any]:
    """What raise leaves: nonconformities, their history and ticket items, records raised."""
    with rt.db.session() as s:
        keys = {i: k for i, k in s.execute(select(Nonconformity.id, Nonconformity.dedup_key))}
    events = [
        {**e, "nonconformity_id": keys[e["nonconformity_id"]]}
        for e in table_rows(rt, NonconformityEvent, ("nonconformity_id", "revision"))
    ]
    return {
        "ncs": table_rows(rt, Nonconformity, ("dedup_key",)),
        "events": sorted(events, key=lambda e: (e["nonconformity_id"], e["revision"])),
        "items": table_rows(rt, OutboxItem, ("idempotency_key",), skip=("entity_id",)),
        "raised": table_rows(rt, ComplianceRecord, ("incident_id",), skip=()),
    }


def test_raise_parts_at_once_leave_what_one_whole_raise_leaves(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=150, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    answered(rt)
    evaluate(rt)
    with rt.db.session() as s:
        s.execute(delete(OutboxItem))  # only the tickets raise queues are compared

    summaries = at_once(
        job(path, "raise-part", "0/3"),
        job(path, "raise-part", "1/3"),
        job(path, "raise-part", "2/3"),
        job(path, "raise-part", "1/3"),  # raced by itself: skipped, or nothing left to do
    )
    assert sum("skipped" in str(x) for x in summaries) <= 1
    split = _raised(rt)
    assert len(split["ncs"]) > 5
    assert len(split["items"]) == len(split["ncs"])  # one ticket each, none twice
    assert raise_nonconformities(rt).counts == Counter()  # nothing left for a whole raise

    # one whole raise from the same starting point leaves the same rows
    with rt.db.session() as s:
        s.execute(delete(OutboxItem))
        s.execute(delete(NonconformityEvent))
        s.execute(delete(Nonconformity))
        s.execute(update(ComplianceRecord).values(raised=False))
    raise_nonconformities(rt)
    assert _raised(rt) == split


def test_track_parts_racing_close_each_ticket_once(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=150, extra={"redis_url": redis_url})
    clock = FakeClock()
    rt = seeded_runtime(path, clock)
    answered(rt)
    evaluate(rt)
    raise_nonconformities(rt)
    push(rt)
    with rt.db.session() as s:
        ticketed = s.scalar(
            select(func.count()).where(Nonconformity.state == "ticketed")  # type: ignore[arg-type]
        )
    assert ticketed
    for _ in range(6):  # the sandbox moves a ticket on at each read, up to done
        clock.advance(days=1)
        at_once(
            job(path, "track-part", "0/2"),
            job(path, "track-part", "1/2"),
            job(path, "track-part", "1/2"),
        )
    with rt.db.session() as s:
        closed = list(s.scalars(select(Nonconformity.id).where(Nonconformity.state == "closed")))
        audits = Counter(
            s.scalars(select(AuditLog.entity_id).where(AuditLog.action == "nonconformity.closed"))
        )
    assert closed
    assert audits == Counter({str(i): 1 for i in closed})  # each closed once, by one part
    assert track_whole(rt).counts["closed"] == 0


def track_whole(rt: Runtime) -> StepResult:
    from core.loop import track

    return track(rt)


def _two_sources(database_url: str, tmp_path: Path, **extra: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = sandbox_config(database_url, tmp_path, incidents=90)
    doc = load_config(base).data
    template = doc["sources"]["itsm"]
    sources = {
        "a": {**template, "seed": "a"},
        "b": {**template, "seed": "b", **extra},
    }
    return sandbox_config(database_url, tmp_path, incidents=90, extra={"sources": sources})


def _planned(rt: Runtime) -> dict[str, Any]:
    """What plan leaves (tokens are random: left out), by incident."""
    with rt.db.session() as s:
        tasks = sorted(
            tuple(r)
            for r in s.execute(
                select(
                    Incident.source,
                    Incident.external_id,
                    CallbackTask.resolution_at,
                    CallbackTask.due_at,
                    CallbackTask.state,
                    CallbackTask.channel,
                ).join(Incident, Incident.id == CallbackTask.incident_id)
            )
        )
        items = sorted(s.scalars(select(OutboxItem.idempotency_key)))
        marks = sorted(tuple(r) for r in s.execute(select(Incident.id, Incident.planned_revision)))
    return {"tasks": tasks, "items": items, "marks": marks}


def test_syncs_of_two_sources_at_once_plan_each_its_own_like_one_plan(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = _two_sources(postgres_url, tmp_path)
    rt = seeded_runtime(path, FakeClock())
    summaries = at_once(job(path, "sync", "a"), job(path, "sync", "b"))
    assert all("plan: " in str(x) and "waited" not in str(x) for x in summaries)
    split = _planned(rt)
    assert len(split["tasks"]) > 100
    assert {src for src, *_ in split["tasks"]} == {"a", "b"}
    with rt.db.session() as s:
        assert not s.scalar(
            select(func.count()).where(Incident.planned_revision < Incident.revision)  # type: ignore[arg-type]
        )
        s.execute(delete(OutboxItem))
        s.execute(delete(CallbackTask))
        s.execute(update(Incident).values(planned_revision=0))
    plan(rt)
    assert _planned(rt) == split


def test_the_first_sources_plan_takes_the_incidents_of_a_disabled_source(
    postgres_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = _two_sources(postgres_url, tmp_path / "both")
    rt = seeded_runtime(path, FakeClock())
    pull(rt, "a")
    pull(rt, "b")
    assert plan(rt, sources=["a"]).counts["callbacks"] > 0
    assert plan(rt, sources=["a"], others=True).counts["callbacks"] == 0  # b is enabled
    disabled = open_runtime(
        load_config(_two_sources(postgres_url, tmp_path / "b-off", enabled=False)),
        clock=FakeClock(),
    )
    try:
        assert plan(disabled, sources=["a"]).counts["callbacks"] == 0
        assert plan(disabled, sources=["a"], others=True).counts["callbacks"] > 0  # b's
    finally:
        disabled.close()
    with rt.db.session() as s:
        assert not s.scalar(
            select(func.count()).where(Incident.planned_revision < Incident.revision)  # type: ignore[arg-type]
        )


def _revisions(rt: Runtime) -> dict[int, int]:
    with rt.db.session() as s:
        return {i: r for i, r in s.execute(select(Incident.id, Incident.revision))}


def _matched(rt: Runtime, before: dict[int, int]) -> dict[str, Any]:
    """The matches, and which incidents reconcile raised the revision of since ``before``
    (by how much depends on how the responses fell into batches)."""
    with rt.db.session() as s:
        events = {i: e for i, e in s.execute(select(Response.id, Response.provider_event_id))}
    matches = [
        {**m, "response_id": events[m["response_id"]]}
        for m in table_rows(rt, Match, ("response_id",))
    ]
    bumped = sorted(i for i, r in _revisions(rt).items() if r > before[i])
    return {"matches": sorted(matches, key=lambda m: m["response_id"]), "bumped": bumped}


def test_collects_of_every_channel_at_once_reconcile_like_one_reconcile(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=150, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    pull(rt, "itsm")
    plan(rt)
    push(rt)
    before = _revisions(rt)
    channels = rt.channel_names()
    at_once(
        *(job(path, "collect", c) for c in channels), *(job(path, "collect", c) for c in channels)
    )
    split = _matched(rt, before)
    assert len(split["matches"]) > 50
    assert split["bumped"]
    with rt.db.session() as s:
        assert not s.scalar(select(func.count()).where(Response.matched.is_(False)))  # type: ignore[arg-type]
        s.execute(delete(Match))
        s.execute(update(Response).values(matched=False))
        for inc_id, revision in before.items():
            s.execute(update(Incident).where(Incident.id == inc_id).values(revision=revision))
    reconcile(rt)
    assert _matched(rt, before) == split


def test_reconcile_of_one_channel_leaves_the_others_and_the_first_takes_strays(
    postgres_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=80)
    rt = seeded_runtime(path, FakeClock())
    pull(rt, "itsm")
    plan(rt)
    push(rt)
    collect(rt, "phone")
    with rt.db.session() as s:
        s.execute(update(Response).values(channel="retired"))  # a channel since removed
        waiting = s.scalar(select(func.count()).where(Response.matched.is_(False)))  # type: ignore[arg-type]
    assert waiting
    assert reconcile(rt, channels=["phone"]).counts == Counter()
    assert jobs._first(rt.channel_names(), "phone")
    done = reconcile(rt, channels=["phone"], others=True)
    assert sum(done.counts.values()) == waiting
