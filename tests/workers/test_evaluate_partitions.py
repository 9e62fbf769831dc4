"""Evaluate split by partition (``incident.id % n == k``) across workers, on PostgreSQL.

The split run — n ``evaluate-part`` jobs, each under its own lease, run at
once — leaves exactly the compliance records and indicators one process
leaves with the whole ``evaluate`` step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import delete, select

from api.cli_jobs import error_text
from core.errors import ConfigError
from core.export import period_indicators
from core.loop import evaluate
from core.runtime import Runtime
from core.store.models import ComplianceRecord, IncidentEvaluation
from tests.utils.loop import FakeClock, sandbox_config
from tests.utils.partitions import answered, at_once, job, table_rows
from workers import jobs, queue
from workers.rq_worker import build_worker


def _records(rt: Runtime) -> list[dict[str, Any]]:
    return table_rows(rt, ComplianceRecord, ("incident_id",))


def _incident_marks(rt: Runtime) -> list[tuple[int, int, object]]:
    with rt.db.session() as s:
        query = select(
            IncidentEvaluation.incident_id,
            IncidentEvaluation.evaluated_revision,
            IncidentEvaluation.evaluate_after,
        )
        return [tuple(r) for r in s.execute(query.order_by(IncidentEvaluation.incident_id))]


def _indicators(rt: Runtime) -> object:
    pol = rt.policy("default")
    with rt.db.session() as s:
        return period_indicators(
            s, policy=pol.name, version=pol.version, month="2026-10", now=rt.now(), rules=pol
        )


def _forget_evaluations(rt: Runtime) -> None:
    with rt.db.session() as s:
        s.execute(delete(ComplianceRecord))
        s.execute(delete(IncidentEvaluation))


def test_partitions_run_at_once_give_the_records_of_one_process(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=150, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    answered(rt)

    # the split run: three partitions, each the RQ entry point under its own lease, at once
    summaries = [
        str(x)
        for x in at_once(*(job(path, "evaluate-part", jobs.part_name(k, 3)) for k in range(3)))
    ]
    assert sorted(s.split(":")[0] + ":" + s.split(":")[1] for s in summaries) == [
        "evaluate-part:0/3",
        "evaluate-part:1/3",
        "evaluate-part:2/3",
    ]
    assert not any("skipped" in s for s in summaries)
    split_records, split_marks, split_ind = _records(rt), _incident_marks(rt), _indicators(rt)
    assert len(split_records) == 150  # every incident once: disjoint partitions, whole cover
    assert len({r["incident_id"] for r in split_records}) == 150
    assert evaluate(rt).counts["evaluated"] == 0  # nothing left for a whole run to do

    # one process, from the same starting point
    _forget_evaluations(rt)
    assert evaluate(rt).counts["evaluated"] == 150
    assert _records(rt) == split_records
    assert _incident_marks(rt) == split_marks
    assert _indicators(rt) == split_ind
    assert split_ind.resolved > 0  # type: ignore[attr-defined]


def test_enqueued_partitions_are_distinct_jobs_run_by_a_worker(
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seeded_runtime: Callable[[Path, FakeClock], Runtime],
) -> None:
    path = sandbox_config(postgres_url, tmp_path, incidents=40, extra={"redis_url": redis_url})
    rt = seeded_runtime(path, FakeClock())
    answered(rt)
    conn = queue.connect(redis_url)
    try:
        done = queue.enqueue_partitions(conn, str(path), 2)
        assert [d.queued for d in done] == [True, True]
        assert len({d.job_id for d in done}) == 2
        again = queue.enqueue_partitions(conn, str(path), 2)  # still queued: not twice
        assert [d.queued for d in again] == [False, False]
        build_worker(conn, ("evaluate-part",), simple=True).work(
            burst=True, logging_level="WARNING"
        )
        for d in done:
            job = Job.fetch(d.job_id, connection=conn)
            assert job.get_status() == JobStatus.FINISHED, error_text(job)
        counted = [str(Job.fetch(d.job_id, connection=conn).return_value()) for d in done]
        assert counted[0].startswith("evaluate-part:0/2: evaluate")
        assert counted[1].startswith("evaluate-part:1/2: evaluate")
        assert len(_records(rt)) == 40
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["2/2", "0/0", "-1/2", "a/b", "1", "0/2/1", "01/2", "0/1025"])
def test_a_malformed_partition_is_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match="evaluate partition"):
        jobs.job_key("evaluate-part", name)


def test_partitions_are_not_scheduled_and_only_partitioned_kinds_fan_out(
    tmp_path: Path, redis_url: str
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    from core.conf import load_config

    assert all(kind != "evaluate-part" for kind, _, _ in jobs.scheduled(load_config(path)))
    assert jobs.job_key("evaluate-part", "1/4") == "evaluate-part:1/4"
    conn = queue.connect(redis_url)
    try:
        with pytest.raises(ConfigError, match="not partitioned"):
            queue.enqueue_partitions(conn, str(path), 2, kind="evaluate")
        with pytest.raises(ConfigError, match="partitions: 0"):
            queue.enqueue_partitions(conn, str(path), 0)
    finally:
        conn.close()


def test_the_cli_enqueues_a_partition_and_refuses_a_malformed_one(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main

    path = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}", tmp_path, extra={"redis_url": redis_url}
    )
    assert main(["jobs", "-c", str(path), "enqueue", "evaluate-part", "1/2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(queue.id_stem("evaluate-part", "1/2")) and out.strip().endswith("queued")
    assert main(["jobs", "-c", str(path), "enqueue", "evaluate-part", "2/2"]) != 0
    assert "evaluate partition '2/2'" in capsys.readouterr().err
