"""The webhook intake writer: deliveries that arrive together share one commit, each is
answered only once committed, duplicates are told apart, a refused delivery fails alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from api import intake
from api.intake import IntakeWriter
from core.loop.intake import Delivery, Stored
from core.records import Outcome
from core.runtime import Runtime
from core.store.models import Response
from tests.utils.loop import Deployment, sandbox_config


def _outcome(event: str, score: float = 4) -> Outcome:
    return Outcome(
        provider_event_id=event,
        kind="survey_answer",
        occurred_at=datetime(2026, 10, 21, 1, 30, tzinfo=UTC),
        correlation_token=f"tok-{event}",
        score=score,
        raw={"id": event},
    )


def _delivery(*events: str, channel: str = "phone") -> Delivery:
    return Delivery(channel, [_outcome(e) for e in events])


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(sandbox_config(database_url, tmp_path))
    yield dep
    dep.close()


def _stored_elsewhere(dep: Deployment) -> set[str]:
    """The events another process sees: what was committed."""
    other = dep.open()
    with other.db.session() as s:
        return set(s.scalars(select(Response.provider_event_id)))


class _Gate:
    """Holds the writer inside its first transaction until released."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, conn: Connection, deliveries: Sequence[Delivery], now: datetime) -> Any:
        self.batches.append([o.provider_event_id for d in deliveries for o in d.outcomes])
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.real(conn, deliveries, now)


def test_deliveries_arriving_together_share_a_commit_and_wait_for_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = deployment.open()
    gate = _Gate(intake.store_deliveries)
    monkeypatch.setattr(intake, "store_deliveries", gate)
    writer = IntakeWriter(rt, writers=1)  # one transaction at a time: batches are exact
    first = writer.submit(_delivery("e1"))
    assert gate.entered.wait(30)
    # these arrive while the first transaction is open: they wait, then go in together
    later = [writer.submit(_delivery(f"e{n}")) for n in range(2, 7)]
    twice = writer.submit(_delivery("e3", "e7"))  # e3 again, in the same batch
    assert not any(f.done() for f in [first, *later, twice])  # no answer before the commit
    assert _stored_elsewhere(deployment) == set()

    seen_at_answer: list[set[str]] = []
    later[0].add_done_callback(lambda _: seen_at_answer.append(_stored_elsewhere(deployment)))
    gate.release.set()
    assert first.result(30) == Stored(created=1, duplicates=0)
    assert [f.result(30) for f in later] == [Stored(1, 0)] * 5
    assert twice.result(30) == Stored(created=1, duplicates=1)
    assert gate.batches == [["e1"], ["e2", "e3", "e4", "e5", "e6", "e3", "e7"]]
    assert writer.commits == 2
    # when the answer was given, another connection saw the whole batch: it was committed
    assert seen_at_answer == [{f"e{n}" for n in range(1, 8)}]

    again = writer.submit(_delivery("e1", "e8"))  # a provider's retry, plus a new event
    assert again.result(30) == Stored(created=1, duplicates=1)
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Response)) == 8


def test_a_delivery_the_store_refuses_fails_alone(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = deployment.open()
    real = intake.store_deliveries
    gate = _Gate(real)

    def refusing(conn: Connection, deliveries: Sequence[Delivery], now: datetime) -> Any:
        if any(d.channel == "nowhere" for d in deliveries):
            msg = "the store refuses channel 'nowhere'"
            raise RuntimeError(msg)
        return gate(conn, deliveries, now)

    monkeypatch.setattr(intake, "store_deliveries", refusing)
    writer = IntakeWriter(rt, writers=1)  # one transaction at a time: batches are exact
    first = writer.submit(_delivery("a1"))
    assert gate.entered.wait(30)
    good1 = writer.submit(_delivery("a2"))
    bad = writer.submit(_delivery("a3", channel="nowhere"))
    good2 = writer.submit(_delivery("a4"))
    gate.release.set()
    assert first.result(30) == Stored(1, 0)
    assert good1.result(30) == Stored(1, 0)
    assert good2.result(30) == Stored(1, 0)
    with pytest.raises(RuntimeError, match="refuses"):
        bad.result(30)
    assert _stored_elsewhere(deployment) == {"a1", "a2", "a4"}


def test_the_writer_thread_ends_when_idle_and_starts_again(deployment: Deployment) -> None:
    rt: Runtime = deployment.open()
    writer = IntakeWriter(rt, idle_s=0.05)
    assert writer.submit(_delivery("i1")).result(30) == Stored(1, 0)
    deadline = datetime.now(UTC).timestamp() + 10
    while any(t.name == "qloop-intake" for t in threading.enumerate()):
        assert datetime.now(UTC).timestamp() < deadline, "the idle writer thread did not end"
        threading.Event().wait(0.02)
    done: Future[Stored] = writer.submit(_delivery("i2"))
    assert done.result(30) == Stored(1, 0)
    assert _stored_elsewhere(deployment) == {"i1", "i2"}
