"""Complaints on PostgreSQL + RQ: every job of the loop on a real RQ worker, complaints included.

The sandbox ITSM flags some incidents as complaints; the jobs (sync, dispatch,
collect, evaluate, track, complaints) run on a burst RQ worker, round after
round, as the cron would queue them: each complaint gets one ticket, its root
cause read back, and one follow-up call once its ticket is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from api.cli_jobs import error_text
from core.runtime import Runtime
from core.store.models import CallbackTask, Complaint, OutboxItem
from tests.utils.loop import FakeClock, sandbox_config
from workers import queue
from workers.jobs import KINDS
from workers.rq_worker import build_worker

ROUND = (
    ("sync", "itsm"),
    ("dispatch", None),
    ("collect", "phone"),
    ("collect", "survey-mail"),
    ("collect", "survey-phone"),
    ("evaluate", None),
    ("track", None),
    ("complaints", None),
    ("dispatch", None),
)


def _round(conn: Redis, cfg: str) -> None:
    for kind, name in ROUND:
        done = queue.enqueue(conn, cfg, kind, name)
        assert done.queued, (kind, name, done)
        build_worker(conn, KINDS, simple=True).work(burst=True, logging_level="WARNING")
        job = Job.fetch(done.job_id, connection=conn)
        assert job.get_status() == JobStatus.FINISHED, (kind, error_text(job))


def test_complaints_flow_on_rq_workers_once_each(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(
        database_url,
        tmp_path,
        incidents=80,
        extra={"redis_url": redis_url, "complaints": {"deadline": "3bd"}},
    )
    clock = FakeClock()
    rt = seeded_runtime(path, clock)
    conn = queue.connect(redis_url)
    for _ in range(5):
        _round(conn, str(path))
        clock.advance(hours=12)
    with rt.db.session() as s:
        complaints = list(s.scalars(select(Complaint)))
        tickets = s.execute(
            select(OutboxItem.entity_id, func.count())
            .where(OutboxItem.kind == "complaint_ticket")
            .group_by(OutboxItem.entity_id)
        ).all()
        follow_ups = s.execute(
            select(CallbackTask.incident_id, func.count())
            .where(CallbackTask.incident_id.in_([c.incident_id for c in complaints]))
            .group_by(CallbackTask.incident_id)
        ).all()
    assert complaints, "the sandbox flags some incidents as complaints"
    assert all(n == 1 for _, n in tickets)  # one ticket per complaint, never two
    assert all(c.ticket_ref for c in complaints if c.origin == "source")
    analysed = [c for c in complaints if c.root_cause]
    assert analysed, "root causes are read back from the sandbox tickets"
    closed = [c for c in complaints if c.closed_at is not None]
    followed = [c for c in closed if c.state == "followed_up"]
    assert followed, "follow-up calls of closed complaints are answered"
    assert all(c.follow_up_outcome["reached"] for c in followed)
    assert follow_ups and all(n <= 2 for _, n in follow_ups)  # the callback, and one follow-up
    conn.close()
