"""The campaigns job on a real RQ worker: answers stored, each reminder round sent once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from redis import Redis
from rq.job import Job, JobStatus
from sqlalchemy import select

from api.cli_jobs import error_text
from core.campaign import launch_campaign, plan_campaign
from core.loop.pull import pull
from core.runtime import Runtime
from core.store.models import CampaignAnswer, CampaignMember, OutboxItem
from tests.utils.loop import FakeClock, sandbox_config
from workers import queue
from workers.rq_worker import build_worker


def _run(conn: Redis, cfg: str) -> None:
    done = queue.enqueue(conn, cfg, "campaigns", None)
    assert done.queued, done
    build_worker(conn, ("campaigns",), simple=True).work(burst=True, logging_level="WARNING")
    job = Job.fetch(done.job_id, connection=conn)
    assert job.get_status() == JobStatus.FINISHED, error_text(job)


def test_campaigns_job_on_rq_collects_and_reminds_once_per_round(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(database_url, tmp_path, incidents=80, extra={"redis_url": redis_url})
    doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    doc["campaigns"] = {
        "annual": {
            "window": {"from": "2026-10-01", "to": "2026-10-31"},
            "channel": "survey-mail",
            "survey_id": 900001,
            "strata": ["priority"],
            "rate": 0.5,
            "reminders": {"every_days": 7, "max": 1},
            "items": {"overall": {"question": "SAT"}},
        }
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    clock = FakeClock()
    rt = seeded_runtime(path, clock)
    pull(rt, "itsm")
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    conn = queue.connect(redis_url)
    clock.advance(days=8)
    _run(conn, str(path))
    clock.advance(hours=1)
    _run(conn, str(path))  # the same round again: nothing more
    clock.advance(days=5)
    _run(conn, str(path))
    with rt.db.session() as s:
        members = [m for m in s.scalars(select(CampaignMember)) if m.state == "sent"]
        reminders = list(s.scalars(select(OutboxItem).where(OutboxItem.kind == "campaign_remind")))
        answers = s.scalars(select(CampaignAnswer)).all()
    assert len(members) > 5
    assert {r.state for r in reminders} == {"sent"}
    assert len({r.entity_id for r in reminders}) == len(reminders) > 0
    assert all(m.reminders <= 1 for m in members)
    reminded = {m.id for m in members if m.reminders == 1}
    assert reminded == {r.entity_id for r in reminders if not r.provider_ref.endswith("answered")}
    assert len(answers) == sum(1 for m in members if m.responded_at is not None) > 0
    conn.close()
