"""The RQ schedule: cron strings fire on time (UTC), one leader at a time, kicks deduplicate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rq import cron as rq_cron
from sqlalchemy import select

from api.cli import main
from core.conf import load_config
from core.runtime import Runtime
from core.store.models import SentReport
from tests.utils.loop import FakeClock, sandbox_config
from tests.workers.test_report_webhook import SECRET, Receiver
from workers import queue
from workers.cron import CronLeader
from workers.rq_worker import build_worker

SCHEDULES = {"dispatch": "* * * * *", "evaluate": "*/5 * * * *", "track": "0 * * * *"}


@pytest.fixture
def rq_clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Drive RQ's cron clock (UTC): set ``clock[0]``."""
    clock = [datetime(2026, 11, 20, 9, 59, 30, tzinfo=UTC)]
    monkeypatch.setattr(rq_cron, "now", lambda: clock[0])
    return clock


def test_the_leader_enqueues_each_job_on_its_schedule_and_a_standby_waits(
    redis_url: str,
    tmp_path: Path,
    rq_clock: list[datetime],
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}",
        tmp_path,
        extra={"redis_url": redis_url, "schedules": SCHEDULES},
    )
    cfg = load_config(path)
    seeded_runtime(path, FakeClock())
    conn = queue.connect(redis_url)
    p = queue.prefix()
    leader = CronLeader(conn, str(path), cfg)
    standby = CronLeader(conn, str(path), cfg)
    assert leader.tick() == []  # elected; nothing due before 10:00
    assert leader.is_leader
    assert standby.tick() == []
    assert not standby.is_leader

    rq_clock[0] = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    assert sorted(leader.tick()) == sorted(
        p + n
        for n in (
            "sync:itsm",
            "collect:phone",
            "collect:survey-mail",
            "collect:survey-phone",
            "dispatch",
            "evaluate",
            "track",
        )
    )
    assert standby.tick() == []  # the standby never enqueues
    rq_clock[0] = datetime(2026, 11, 20, 10, 0, 40, tzinfo=UTC)
    assert leader.tick() == []
    rq_clock[0] = datetime(2026, 11, 20, 10, 1, 0, tzinfo=UTC)
    assert leader.tick() == [p + "dispatch"]
    dispatch_queue = queue.queue_for(conn, "dispatch")
    assert dispatch_queue.count == 2  # two kicks

    build_worker(conn, simple=True).work(burst=True, logging_level="WARNING")
    kicks = [j for j in dispatch_queue.finished_job_registry.get_job_ids()]
    results = {
        jid: str(dispatch_queue.fetch_job(jid).return_value())  # type: ignore[union-attr]
        for jid in kicks
    }
    real = [r for jid, r in results.items() if jid.startswith(queue.id_stem("dispatch"))]
    assert len(real) == 1  # two fires while one dispatch was queued: one real job
    assert real[0].startswith("dispatch: push")
    assert any("already queued or running" in r for r in results.values())
    for kind, name in [("sync", "itsm"), ("evaluate", None), ("track", None)]:
        q = queue.queue_for(conn, kind)
        ids = [
            j
            for j in q.finished_job_registry.get_job_ids()
            if j.startswith(queue.id_stem(kind, name))
        ]
        assert len(ids) == 1, (kind, ids)

    # hand-over: the leader resigns, the standby leads and catches up the 10:05 fire
    leader.resign()
    rq_clock[0] = datetime(2026, 11, 20, 10, 5, 10, tzinfo=UTC)
    assert set(standby.tick()) >= {p + "sync:itsm", p + "dispatch", p + "evaluate"}
    assert standby.is_leader
    assert leader.tick() == []
    assert not leader.is_leader
    standby.resign()
    conn.close()


def test_a_dead_leader_is_replaced_once_its_lock_expires(
    redis_url: str, tmp_path: Path, rq_clock: list[datetime]
) -> None:
    path = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}", tmp_path, extra={"redis_url": redis_url}
    )
    cfg = load_config(path)
    conn = queue.connect(redis_url)
    first = CronLeader(conn, str(path), cfg, lock_ttl_s=1)
    second = CronLeader(conn, str(path), cfg, lock_ttl_s=1)
    first.tick()
    assert first.is_leader
    second.tick()
    assert not second.is_leader
    time.sleep(1.2)  # the first stopped renewing (it hung or died): its lock runs out
    second.tick()
    assert second.is_leader
    assert first.tick() == []  # it finds it lost the lock and stands by
    assert not first.is_leader
    second.resign()
    conn.close()


def test_scheduler_command_runs_the_rq_leader_with_redis_url(
    redis_url: str, tmp_path: Path, rq_clock: list[datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}", tmp_path, extra={"redis_url": redis_url}
    )
    assert main(["scheduler", "-c", str(path), "--max-ticks", "1"]) == 0
    out = capsys.readouterr().out
    assert "RQ cron, UTC" in out
    assert "sync:itsm" in out
    conn = queue.connect(redis_url)
    assert conn.get(f"{queue.prefix()}qloop:cron-leader") is None  # resigned on exit
    conn.close()


def test_deliver_fires_on_its_schedule_and_the_worker_sends_the_report(
    redis_url: str,
    tmp_path: Path,
    rq_clock: list[datetime],
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    """With ``reports.send``, the RQ schedule fires ``deliver``; a worker sends the report once."""
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/qa"
    try:
        plain = sandbox_config(
            f"sqlite:///{tmp_path / 'plain.db'}", tmp_path, extra={"redis_url": redis_url}
        )
        names = [
            j.name
            for j in CronLeader(queue.connect(redis_url), str(plain), load_config(plain)).jobs
        ]
        assert not any(n.endswith("deliver") for n in names)  # no recipients, no job

        path = sandbox_config(
            f"sqlite:///{tmp_path / 'q.db'}",
            tmp_path,
            extra={
                "redis_url": redis_url,
                "schedules": {**SCHEDULES, "deliver": "0 2 * * *"},
                "reports": {"send": [{"to": [url], "via": "webhook", "secret": SECRET}]},
            },
        )
        cfg = load_config(path)
        clock = FakeClock()
        clock.now = datetime(2026, 11, 2, 2, tzinfo=UTC)  # November's first working day
        rt = seeded_runtime(path, clock)
        conn = queue.connect(redis_url)
        leader = CronLeader(conn, str(path), cfg)
        rq_clock[0] = datetime(2026, 11, 2, 1, 59, 30, tzinfo=UTC)
        leader.tick()
        rq_clock[0] = datetime(2026, 11, 2, 2, 0, 0, tzinfo=UTC)
        assert queue.prefix() + "deliver" in leader.tick()
        build_worker(conn, simple=True, kinds=("deliver",)).work(
            burst=True, logging_level="WARNING"
        )
        build_worker(conn, simple=True, kinds=("deliver",)).work(
            burst=True, logging_level="WARNING"
        )
        ((_, body),) = receiver.accepted
        assert b'"name": "qloop-report-2026-10-default.pdf"' in body
        with rt.db.session() as s:
            (row,) = s.scalars(select(SentReport)).all()
            assert row.state == "sent" and row.actor == "job:deliver"
        leader.resign()
        conn.close()
    finally:
        receiver.shutdown()
        receiver.server_close()
