"""Nonconformities follow the facts (SPEC §10) and wait for their channel's outcomes.

Scripted connectors (tests/utils/fixture_connectors.py): a callback channel
that reports the answers of a task once it is sent, a survey channel that
does the same, and an ITSM that keeps the tickets and comments it gets.
Clock: 2026-11-20 UTC; the incidents were resolved in October.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core.loop import (
    collect,
    evaluate,
    plan,
    pull,
    push,
    raise_nonconformities,
    reconcile,
    run_once,
)
from core.loop.push import FOLLOW_UPS
from core.records import Category as C
from core.records import Outcome
from core.runtime import Runtime
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Nonconformity,
    NonconformityEvent,
    OutboxItem,
)
from tests.utils.fixture_connectors import WORLD, answer, attempt, incident, register_fixture_types
from tests.utils.loop import Deployment, fixture_config, sandbox_config

SH = ZoneInfo("Asia/Shanghai")


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def _resolved(key: str, day: int) -> object:
    """A P3 incident answered quickly and resolved the same day (no SLA breach)."""
    return incident(
        key,
        "P3",
        L(10, day, 10),
        [
            (L(10, day, 10), C.NEW),
            (L(10, day, 10, 10), C.IN_PROGRESS),
            (L(10, day, 15), C.RESOLVED),
        ],
    )


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    WORLD.reset()
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()


def _ncs(rt: Runtime, key: str) -> dict[str, Nonconformity]:
    with rt.db.session() as s:
        rows = s.scalars(select(Nonconformity).join(Incident).where(Incident.key == key))
        return {nc.rule: nc for nc in rows}


def _history(rt: Runtime, nc_id: int) -> list[NonconformityEvent]:
    with rt.db.session() as s:
        return list(
            s.scalars(
                select(NonconformityEvent)
                .where(NonconformityEvent.nonconformity_id == nc_id)
                .order_by(NonconformityEvent.revision)
            )
        )


def _sent_follow_ups(rt: Runtime) -> list[tuple[str, str]]:
    with rt.db.session() as s:
        return sorted(
            s.execute(
                select(OutboxItem.kind, OutboxItem.state).where(OutboxItem.kind.in_(FOLLOW_UPS))
            ).all()
        )


def test_a_later_worse_survey_updates_the_nonconformity_and_comments_its_ticket_once(
    deployment: Deployment,
) -> None:
    WORLD.incidents = [_resolved("ITSD-1", 15)]
    # callback on time, confirmed, score 3 (low, minor); the survey, sent after, says 1
    WORLD.answers = {"ITSD-1": [attempt(L(10, 16, 9), True, True, 3), answer(L(10, 18, 10), 1)]}
    rt = deployment.open()
    assert run_once(rt).errors == []
    low = _ncs(rt, "ITSD-1")["low_satisfaction"]
    assert (low.severity, low.revision, low.state) == ("minor", 1, "ticketed")
    ref = low.ticket_ref
    assert ref is not None and WORLD.comments == {}

    assert run_once(rt).errors == []  # collects the survey answer: score 1
    low = _ncs(rt, "ITSD-1")["low_satisfaction"]
    assert (low.severity, low.revision) == ("major", 2)
    assert low.raised_at == L(10, 16, 9)  # still the earliest low answer (§10)
    assert "survey score 1" in low.detail
    with rt.db.session() as s:
        record = s.scalars(select(ComplianceRecord)).one()
        assert record.survey_score == 1.0  # the record and the nonconformity agree
    events = _history(rt, low.id)
    assert [e.kind for e in events] == ["raised", "updated"]
    assert events[1].changes["severity"] == ["minor", "major"]
    assert "survey score 1" in events[1].reason
    assert len(WORLD.comments[ref]) == 1
    comment = WORLD.comments[ref][0]
    assert "severity: minor → major" in comment and "survey score 1" in comment
    assert WORLD.ticket_status[ref] == "Open"  # updated, not resolved
    assert len(WORLD.tickets) == 1

    calls = WORLD.comment_calls
    for _ in range(2):
        assert run_once(rt).errors == []
    assert WORLD.comment_calls == calls and len(WORLD.comments[ref]) == 1
    assert _sent_follow_ups(rt) == [("ticket_comment", "sent")]
    assert _ncs(rt, "ITSD-1")["low_satisfaction"].revision == 2


def _late_answer(key: str, at: datetime) -> None:
    """The callback channel reports, late, that ``key``'s customer was reached at ``at``."""
    sent = next(m for m in WORLD.sent.values() if m.incident_key == key and m.kind == "callback")
    WORLD.outcomes.append(
        Outcome(
            provider_event_id=f"late-{key}",
            kind="callback_attempt",
            occurred_at=at,
            correlation_token=sent.correlation_token,
            reached=True,
            confirmed=True,
            score=5,
            scale=(1, 5),
        )
    )


def test_a_late_collected_outcome_withdraws_callback_missed_and_resolves_its_ticket(
    deployment: Deployment,
) -> None:
    WORLD.incidents = [_resolved("ITSD-2", 15)]
    rt = deployment.open()
    assert run_once(rt).errors == []
    missed = _ncs(rt, "ITSD-2")["callback_missed"]
    assert missed.state == "ticketed" and missed.ticket_ref is not None
    ref = missed.ticket_ref

    _late_answer("ITSD-2", L(10, 16, 9))  # reached within 24 h: on time after all
    assert run_once(rt).errors == []
    missed = _ncs(rt, "ITSD-2")["callback_missed"]
    assert missed.state == "withdrawn" and missed.withdrawn_at is not None
    assert missed.revision == 2
    assert WORLD.ticket_status[ref] == "Resolved"  # never left open as an orphan
    (comment,) = WORLD.comments[ref]
    assert "withdrew" in comment and "on_time" in comment
    events = _history(rt, missed.id)
    assert [e.kind for e in events] == ["raised", "withdrawn"]
    assert events[1].changes == {"state": ["ticketed", "withdrawn"]}
    assert "on_time" in events[1].reason

    calls = WORLD.comment_calls
    assert run_once(rt).errors == []
    assert WORLD.comment_calls == calls
    assert _sent_follow_ups(rt) == [("ticket_resolve", "sent")]


def test_a_finding_about_a_callback_waits_for_its_channel_to_be_collected(
    deployment: Deployment,
) -> None:
    WORLD.incidents = [_resolved("ITSD-3", 15)]
    WORLD.answers = {"ITSD-3": [attempt(L(10, 16, 9), True, True, 5)]}
    rt = deployment.open()
    # the task goes out, and raise runs before the channel was ever collected
    pull(rt, "itsm")
    plan(rt)
    push(rt, kinds=("callback",))
    evaluate(rt)
    raised = raise_nonconformities(rt)
    assert raised.counts["held_for_collect"] == 1
    assert _ncs(rt, "ITSD-3") == {}
    with rt.db.session() as s:
        assert s.scalars(select(ComplianceRecord.raised)).one() is False  # looked at again

    collect(rt, "phone")
    reconcile(rt)
    evaluate(rt)
    raise_nonconformities(rt)
    assert _ncs(rt, "ITSD-3") == {}  # reached on time: nothing to raise, nothing to withdraw
    with rt.db.session() as s:
        assert s.scalars(select(ComplianceRecord.callback_verdict)).one() == "on_time"
        assert s.scalars(select(ComplianceRecord.raised)).one() is True


def test_a_held_back_finding_is_raised_once_its_channel_is_collected(
    deployment: Deployment,
) -> None:
    WORLD.incidents = [_resolved("ITSD-4", 15)]
    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    push(rt, kinds=("callback",))
    evaluate(rt)
    raise_nonconformities(rt)
    assert _ncs(rt, "ITSD-4") == {}
    collect(rt, "phone")  # nothing came: the callback is missed indeed
    raise_nonconformities(rt)
    assert set(_ncs(rt, "ITSD-4")) == {"callback_missed"}


def test_a_withdrawn_finding_that_comes_back_is_reinstated_with_a_new_ticket(
    deployment: Deployment,
) -> None:
    # a P2 answered after its 30 min target: response breach
    late = incident(
        "ITSD-5",
        "P2",
        L(10, 14, 10),
        [(L(10, 14, 10), C.NEW), (L(10, 14, 11), C.IN_PROGRESS), (L(10, 14, 15), C.RESOLVED)],
    )
    WORLD.incidents = [late]
    WORLD.answers = {"ITSD-5": [attempt(L(10, 15, 9), True, True, 5)]}
    rt = deployment.open()
    assert run_once(rt).errors == []
    breach = _ncs(rt, "ITSD-5")["response_breach"]
    first_ref = breach.ticket_ref
    assert first_ref is not None

    # the ITSM corrects its history: answered in time (the finding goes)
    fixed = incident(
        "ITSD-5",
        "P2",
        L(10, 14, 10),
        [
            (L(10, 14, 10), C.NEW),
            (L(10, 14, 10, 10), C.IN_PROGRESS),
            (L(10, 14, 15, 1), C.RESOLVED),
        ],
    )
    WORLD.incidents = [fixed]
    assert run_once(rt).errors == []
    assert _ncs(rt, "ITSD-5")["response_breach"].state == "withdrawn"
    assert WORLD.ticket_status[first_ref] == "Resolved"

    # and back again (the finding holds again): same row, a new ticket
    WORLD.incidents = [
        incident(
            "ITSD-5",
            "P2",
            L(10, 14, 10),
            [
                (L(10, 14, 10), C.NEW),
                (L(10, 14, 11), C.IN_PROGRESS),
                (L(10, 14, 15, 2), C.RESOLVED),
            ],
        )
    ]
    assert run_once(rt).errors == []
    again = _ncs(rt, "ITSD-5")["response_breach"]
    assert again.id == breach.id and again.state == "ticketed" and again.revision == 3
    assert again.ticket_ref not in (None, first_ref)
    assert [e.kind for e in _history(rt, again.id)] == ["raised", "withdrawn", "reinstated"]
    assert len(WORLD.tickets) == 2


def test_no_callback_missed_before_its_task_is_out_and_collected_in_a_sandbox_month(
    database_url: str, tmp_path: Path
) -> None:
    """The scheduler runs evaluate and raise (one job) before push and collect (their own
    jobs): the callbacks still wait in the outbox while their resolutions' dues are long
    past. A missed callback is raised only once its task went out and the channel was
    collected after, so none is withdrawn when the answers come, no ticket is left open
    for a finding that no longer holds, and a re-run sends nothing."""
    dep = Deployment(sandbox_config(database_url, tmp_path, incidents=60))
    try:
        first = dep.open()
        pull(first, "itsm")
        plan(first)
        evaluate(first)
        raise_nonconformities(first)
        push(first, kinds=("ticket", *FOLLOW_UPS))
        with first.db.session() as s:
            assert set(s.scalars(select(CallbackTask.state))) >= {"planned"}
        rt = dep.open()
        for _ in range(4):
            dep.clock.advance(hours=1)  # the outbox's backoffs pass
            assert run_once(rt).errors == []
        with rt.db.session() as s:
            left = s.scalars(
                select(OutboxItem.idempotency_key).where(
                    OutboxItem.state.in_(("pending", "sending", "dead"))
                )
            ).all()
            missed = s.scalar(
                select(func.count())
                .select_from(Nonconformity)
                .where(Nonconformity.rule == "callback_missed")
            )
            withdrawn_missed = s.scalars(
                select(Nonconformity.dedup_key).where(
                    Nonconformity.rule == "callback_missed", Nonconformity.state == "withdrawn"
                )
            ).all()
            resolved = set(
                s.scalars(select(OutboxItem.entity_id).where(OutboxItem.kind == "ticket_resolve"))
            )
            orphans = [
                key
                for nc_id, key in s.execute(
                    select(Nonconformity.id, Nonconformity.dedup_key).where(
                        Nonconformity.state == "withdrawn", Nonconformity.ticket_ref.is_not(None)
                    )
                )
                if nc_id not in resolved
            ]
        assert left == []
        assert missed and withdrawn_missed == []
        assert orphans == []
        again = run_once(dep.open())
        assert again.errors == [] and again.sent() == 0
    finally:
        dep.close()


def test_track_writes_a_ticket_row_only_when_its_status_changes(deployment: Deployment) -> None:
    from core.loop import track

    WORLD.incidents = [_resolved("ITSD-7", 15)]
    WORLD.answers = {"ITSD-7": [attempt(L(10, 16, 9), True, True, 3)]}  # low: minor
    rt = deployment.open()
    assert run_once(rt).errors == []
    low = _ncs(rt, "ITSD-7")["low_satisfaction"]
    assert (low.state, low.ticket_status) == ("ticketed", "Open")
    read_at = low.updated_at

    deployment.clock.advance(hours=2)
    assert track(rt).counts["open"] == 1  # read again, still Open: the row stays as it was
    again = _ncs(rt, "ITSD-7")["low_satisfaction"]
    assert (again.ticket_status, again.updated_at, again.revision) == ("Open", read_at, 1)

    assert low.ticket_ref is not None
    WORLD.ticket_status[low.ticket_ref] = "Waiting for customer"
    deployment.clock.advance(hours=1)
    assert track(rt).counts["open"] == 1
    moved = _ncs(rt, "ITSD-7")["low_satisfaction"]
    assert (moved.ticket_status, moved.state) == ("Waiting for customer", "ticketed")
    assert moved.updated_at == rt.now()

    WORLD.ticket_status[low.ticket_ref] = "Closed"
    assert track(rt).counts["closed"] == 1
    closed = _ncs(rt, "ITSD-7")["low_satisfaction"]
    assert (closed.state, closed.ticket_status) == ("closed", "Closed")
