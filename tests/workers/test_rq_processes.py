"""Issue 5's acceptance: two real ``qloop worker`` processes and ``qloop serve`` on PostgreSQL
and Redis run a sandbox month to the same export as embedded mode (SQLite), row for row.

The jobs are enqueued the way the scheduler's cron targets enqueue them
(:func:`workers.queue.enqueue`), stage by stage in the loop's order; the
cron leader's timing is covered in ``test_rq_cron.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from redis import Redis
from rq.job import Job, JobStatus

from api.cli import main
from tests.conftest import ROOT
from tests.utils.loop import sandbox_config
from workers import queue

pytestmark = pytest.mark.slow

STAGES: list[list[tuple[str, str | None]]] = [
    [("sync", "itsm")],
    [("dispatch", None)],
    [("collect", "phone"), ("collect", "survey-mail"), ("collect", "survey-phone")],
    [("evaluate", None)],
    [("dispatch", None)],
    [("track", None)],
]
CYCLES = 3
QA_TOKEN = "qa-token-0123456789abcdef"


def qloop(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``qloop ARGS`` in a child process, its output in ``log``."""
    code = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(conn: Redis, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [Job.fetch(i, connection=conn).get_status() for i in ids]
        if all(s == JobStatus.FINISHED for s in statuses):
            return
        failed = [i for i, s in zip(ids, statuses, strict=True) if s == JobStatus.FAILED]
        assert not failed, f"jobs failed: {failed}"
        time.sleep(0.1)
    pytest.fail(f"jobs not finished in {timeout} s: {ids}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def facts(text: str) -> list[dict[str, object]]:
    """Export rows without ``evaluated_at`` (when it was computed, not what was measured)."""
    rows = [json.loads(line) for line in text.splitlines() if line]
    for row in rows:
        del row["evaluated_at"]
    return rows


def export_rows(path: Path, out: Path) -> list[dict[str, object]]:
    assert main(["export", "-c", str(path), "--period", "2026-10", "--format", "jsonl",
                 "--out", str(out)]) == 0  # fmt: skip
    [rows_file] = [p for p in out.iterdir() if p.name == "qloop-2026-10-default.jsonl"]
    return facts(rows_file.read_text(encoding="utf-8"))


def test_workers_and_api_reproduce_the_embedded_month(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    embedded_dir, scaled_dir = tmp_path / "embedded", tmp_path / "scaled"
    embedded_dir.mkdir()
    scaled_dir.mkdir()
    embedded = sandbox_config(f"sqlite:///{embedded_dir / 'q.db'}", embedded_dir, incidents=80)
    scaled = sandbox_config(postgres_url, scaled_dir, incidents=80)
    doc = yaml.safe_load(scaled.read_text(encoding="utf-8"))
    doc["redis_url"] = redis_url
    doc["api"] = {"tokens": [{"name": "qa", "token": QA_TOKEN, "role": "qa-read"}]}
    scaled.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    assert main(["run", "-c", str(embedded), "--cycles", str(CYCLES), "-q"]) == 0

    workers = [qloop(tmp_path / f"worker{i}.log", "worker", "-c", str(scaled)) for i in (1, 2)]
    port = free_port()
    api = qloop(
        tmp_path / "api.log", "serve", "-c", str(scaled), "--host", "127.0.0.1", "--port", str(port)
    )
    conn = queue.connect(redis_url)
    try:
        for _ in range(CYCLES):
            for stage in STAGES:
                done = [queue.enqueue(conn, str(scaled), kind, name) for kind, name in stage]
                assert all(d.queued for d in done), done
                wait_for(conn, [d.job_id for d in done])
        for i in (1, 2):
            assert "Traceback" not in (tmp_path / f"worker{i}.log").read_text()
        expected = export_rows(embedded, embedded_dir / "out")
        assert len(expected) > 50
        assert export_rows(scaled, scaled_dir / "out") == expected
        # QA downloads the same month through the API of the scaled-out deployment
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/exports/2026-10",
                    params={"format": "jsonl"},
                    headers={"Authorization": f"Bearer {QA_TOKEN}"},
                    timeout=30,
                )
                break
            except httpx.TransportError:
                assert api.poll() is None, (tmp_path / "api.log").read_text()
                assert time.monotonic() < deadline, "qloop serve did not start"
                time.sleep(0.3)
        assert r.status_code == 200, r.text
        assert facts(r.text) == expected
    finally:
        conn.close()
        named = {"worker1": workers[0], "worker2": workers[1], "api": api}
        for proc in named.values():
            proc.send_signal(signal.SIGTERM)
        stuck = []
        for name, proc in named.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                stuck.append(f"{name}: {(tmp_path / f'{name}.log').read_text()[-2000:]}")
    # idle workers and the API stop within seconds of SIGTERM (warm shutdown)
    assert not stuck, "\n".join(stuck)
