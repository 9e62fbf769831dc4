"""The outbox sends each item once per key, retries with backoff, dead-letters, replays,
and settles items left in doubt by a crash between sending and recording."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core.errors import FatalError, RetriableError
from core.loop import plan, pull, push
from core.loop.common import StepResult
from core.loop.push import CLAIM_LEASE_S, _claim, replay_dead
from core.records import Category as C
from core.store.models import AuditLog, CallbackTask, OutboxItem
from tests.utils.fixture_connectors import WORLD, incident, register_fixture_types
from tests.utils.loop import Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")


def _resolved(key: str, day: int) -> object:
    start = datetime(2026, 10, day, 9, tzinfo=SH)
    return incident(
        key,
        "P3",
        start,
        [
            (start, C.NEW),
            (start.replace(hour=10), C.IN_PROGRESS),
            (start.replace(hour=11), C.RESOLVED),
        ],
    )


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    WORLD.reset()
    WORLD.incidents = [_resolved(f"ITSD-{i}", 10 + i) for i in range(1, 4)]  # type: ignore[misc]
    dep = Deployment(
        fixture_config(
            database_url,
            tmp_path,
            {"outbox": {"max_attempts": 3, "backoff_initial": "30s", "backoff_max": "10m"}},
        )
    )
    yield dep
    dep.close()


def _states(dep_rt: object) -> dict[str, int]:
    with dep_rt.db.session() as s:  # type: ignore[attr-defined]
        return dict(
            s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
        )


def test_retriable_failures_back_off_then_dead_letter_then_replay(deployment: Deployment) -> None:
    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    WORLD.send_errors = [RetriableError("503 Service Unavailable", retry_after=0)] * 100
    push(rt)
    assert _states(rt) == {"pending": 3}
    push(rt)  # not due yet: nothing is tried
    calls = WORLD.send_calls
    push(rt)
    assert WORLD.send_calls == calls
    deployment.clock.advance(seconds=31)
    push(rt)
    assert _states(rt) == {"pending": 3}
    deployment.clock.advance(seconds=61)
    push(rt)  # third failed attempt: dead
    assert _states(rt) == {"dead": 3}
    with rt.db.session() as s:
        item = s.scalars(select(OutboxItem)).first()
        assert item is not None and "503" in (item.last_error or "")
        assert {t.state for t in s.scalars(select(CallbackTask))} == {"dead"}
        assert s.scalar(select(func.count()).where(AuditLog.action == "outbox.dead")) == 3
    WORLD.send_errors = []
    assert WORLD.sent == {}
    assert replay_dead(rt) == 3
    push(rt)
    assert _states(rt) == {"sent": 3}
    assert len(WORLD.sent) == 3
    with rt.db.session() as s:
        assert {t.state for t in s.scalars(select(CallbackTask))} == {"sent"}


def test_retry_after_longer_than_backoff_is_honoured(deployment: Deployment) -> None:
    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    WORLD.send_errors = [RetriableError("429 Too Many Requests", retry_after=600)]
    push(rt)
    with rt.db.session() as s:
        waits = sorted(
            (i.next_attempt_at - rt.now()).total_seconds() for i in s.scalars(select(OutboxItem))
        )
    assert waits[-1] == 600  # the throttled item waits what the provider asked
    assert _states(rt) == {"sent": 2, "pending": 1}


def test_fatal_error_dead_letters_at_once(deployment: Deployment) -> None:
    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    WORLD.send_errors = [FatalError("400 Bad Request: phone number invalid")]
    push(rt)
    assert _states(rt) == {"dead": 1, "sent": 2}


def test_crash_between_send_and_record_is_settled_by_asking_the_provider(
    deployment: Deployment,
) -> None:
    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    # a dispatcher claims the items and the provider accepts them, then the process dies
    ids = _claim(rt, None)
    with rt.db.session() as s:
        from core.loop.push import _send

        for item in s.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids))):
            _send(rt, item)
        s.rollback()
    assert _states(rt) == {"sending": 3} and len(WORLD.sent) == 3
    calls = WORLD.send_calls
    rt2 = deployment.open()  # the restarted process
    push(rt2)
    assert _states(rt2) == {"sending": 3}, "a fresh claim is not in doubt yet"
    deployment.clock.advance(seconds=CLAIM_LEASE_S + 1)
    result: StepResult = push(rt2)
    assert result.counts["in_doubt"] == 3
    assert _states(rt2) == {"sent": 3}
    assert WORLD.send_calls == calls, "nothing was sent again"
    with rt2.db.session() as s:
        refs = {t.provider_ref for t in s.scalars(select(CallbackTask))}
    assert None not in refs and len(refs) == 3


def test_a_claim_returns_only_the_items_it_took_from_pending(deployment: Deployment) -> None:
    """Two dispatchers select the same pending items; the one whose update comes second
    must get none of them back, or both would send them."""
    from core.loop.push import take

    rt = deployment.open()
    pull(rt, "itsm")
    plan(rt)
    with rt.db.session() as s:
        ids = sorted(s.scalars(select(OutboxItem.id).where(OutboxItem.state == "pending")))
    assert len(ids) == 3
    now = rt.now()
    with rt.db.session() as s:  # the other dispatcher's claim landed first, on one item
        assert take(s, ids[:1], now) == ids[:1]
        s.commit()
    with rt.db.session() as s:  # this one selected all three before that update
        assert take(s, ids, now) == ids[1:]
        s.commit()
    with rt.db.session() as s:
        assert take(s, ids, now) == []
        s.commit()
    assert _states(rt) == {"sending": 3}
    push(rt)  # nothing is sent twice: the claimed items wait for their lease to run out
    assert WORLD.send_calls == 0 and _states(rt) == {"sending": 3}
