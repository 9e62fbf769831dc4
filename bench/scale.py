"""Benchmark: the sandbox loop on PostgreSQL + Redis with 1, then 2 real RQ workers.

    python bench/scale.py [--incidents 100000] [--sources 2] [--cycles 3] [--workers 1 2]

For each worker count: a fresh PostgreSQL database (``QLOOP_BENCH_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``; created and
dropped here), its own ``QLOOP_QUEUE_PREFIX`` on Redis (``QLOOP_BENCH_REDIS``,
default ``redis://127.0.0.1:6379/0``; its keys deleted after), the demo's
sandbox config with ``--incidents`` split over ``--sources`` sandbox sources
(a provider with several ITSM tools) and the injected failures off, and that
many ``qloop worker`` processes (the repository's entry point, forking a
work horse per job).

The driver enqueues the loop's jobs stage by stage, in the order of
``run_once``, and waits for each stage: one ``sync`` per source (pull, plan
its incidents), the outbox sent as one ``dispatch-part`` job per partition
(``entity_id % n == k``), one ``collect`` per channel (collect, reconcile its
responses), the evaluate fanned out as one ``evaluate-part`` job per
partition (``incident.id % n == k``), ``sample``, one ``raise-part`` job per
partition, ``dispatch-part`` again, one ``track-part`` per partition;
``--cycles`` times (with a job catalogue that has no ``dispatch-part``, as
before: ``dispatch``, ``evaluate`` after the parts, ``track``). Jobs of one
stage run on whichever worker is free; each holds its own database lease,
so nothing is done twice. Every job must finish; at the end both runs must
hold the same incidents, compliance records and callbacks, with every
outbox item sent.

Printed per run: wall seconds, the workers' CPU seconds (their work horses
included) and PostgreSQL's (its backends serving the run's database,
sampled from ``/proc`` every 0.2 s while they live), per stage its wall
seconds, the busy seconds of its jobs and the idle worker-seconds left
(workers × wall − busy), per kind of job the sum of the jobs' run times,
and per step of the jobs (their summaries carry each step's seconds) the
sum. The last line is ``speedup=…`` (wall time of 1 worker over wall time
of 2), beside the CPU ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import yaml
from redis import Redis
from rq.job import Job, JobStatus

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("QLOOP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("QLOOP_BENCH_REDIS", "redis://127.0.0.1:6379/0")
JOB_WAIT_S = 3600.0


def db_url(name: str, driver: str = "postgresql") -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", f"{driver}://", 1)


def write_config(workdir: Path, database: str, incidents: int, sources: int) -> Path:
    """The demo's sandbox config on ``database``, ``incidents`` over ``sources`` sources."""
    doc = yaml.safe_load((ROOT / "config" / "sandbox.yaml").read_text(encoding="utf-8"))
    doc["database_url"] = db_url(database, "postgresql+psycopg")
    doc["redis_url"] = REDIS_URL
    doc["state_dir"] = str(workdir / "state")
    [(name, template)] = list(doc["sources"].items())
    per = [incidents // sources + (1 if i < incidents % sources else 0) for i in range(sources)]
    doc["sources"] = {
        (name if sources == 1 else f"{name}-{i + 1}"): {
            **template,
            "seed": f"{template['seed']}-{i + 1}" if sources > 1 else template["seed"],
            "incidents": n,
            "failure_rate": 0,
        }
        for i, n in enumerate(per)
    }
    for channel in doc["channels"].values():
        channel["failure_rate"] = 0
    path = workdir / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def stages(cfg: Any, parts: int) -> list[list[tuple[str, str | None]]]:
    """The loop's jobs in ``run_once``'s order; the jobs of one stage may run at once.

    Partitioned kinds the job catalogue does not have run whole (one job).
    """
    from workers import jobs

    def split(kind: str, whole: str) -> list[tuple[str, str | None]]:
        if f"{kind}-part" not in jobs.JOBS:
            return [(whole, None)]
        return [(f"{kind}-part", jobs.part_name(k, parts)) for k in range(parts)]

    fanned = "sample" in jobs.JOBS and "raise-part" in jobs.JOBS
    return [
        [("sync", s) for s in cfg.sources],
        split("dispatch", "dispatch"),
        [("collect", c) for c in cfg.channels],
        [("evaluate-part", jobs.part_name(k, parts)) for k in range(parts)],
        *([[("sample", None)], split("raise", "evaluate")] if fanned else [[("evaluate", None)]]),
        split("dispatch", "dispatch"),
        split("track", "track"),
    ]


STEP_TIME = re.compile(r"^(\w+)[^:]*: .*\((\d+\.\d+) s(?:, waited (\d+\.\d+) s)?\)$")
"""A step's part of a job's summary: ``plan: callbacks=3 (0.52 s)``, its first word and times."""


def step_times(summary: str, key: str) -> list[tuple[str, float, float]]:
    """``(step, seconds, waited)`` of each timed step of job ``key``'s summary (by its first
    word: ``pull itsm-1`` counts as ``pull``)."""
    found = []
    for part in summary.removeprefix(f"{key}: ").split("; "):
        timed = STEP_TIME.match(part)
        if timed:
            found.append((timed.group(1), float(timed.group(2)), float(timed.group(3) or 0)))
    return found


class PgCpu(threading.Thread):
    """Samples the CPU seconds of PostgreSQL's backends serving ``database`` (same host).

    Every backend seen is read from ``/proc/<pid>/stat`` every ``period``
    seconds while it lives; its last reading counts (so up to one period of
    a backend's last work is missed). 0 when ``/proc`` cannot be read.
    """

    def __init__(self, database: str, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.database, self.period = database, period
        self.seen: dict[int, float] = {}
        self._done = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")

    def _cpu(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self._tick

    def run(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            while not self._done.is_set():
                pids = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
                ).fetchall()
                for (pid,) in pids:
                    cpu = self._cpu(pid)
                    if cpu is not None:
                        self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
                self._done.wait(self.period)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return sum(self.seen.values())


def start_worker(config: Path, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QLOOP_QUEUE_PREFIX": prefix}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "--log-level", "warning", "worker", "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(conn: Redis, ids: list[str], procs: list[subprocess.Popen[bytes]]) -> list[Job]:
    deadline = time.monotonic() + JOB_WAIT_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            msg = "a worker exited before the jobs were done (see its log)"
            raise SystemExit(msg)
        found = [Job.fetch(i, connection=conn) for i in ids]
        statuses = [j.get_status() for j in found]
        failed = [j.id for j, s in zip(found, statuses, strict=True) if s == JobStatus.FAILED]
        if failed:
            msg = f"jobs failed: {failed}"
            raise SystemExit(msg)
        if all(s == JobStatus.FINISHED for s in statuses):
            return found
        time.sleep(0.05)
    msg = f"jobs not finished in {JOB_WAIT_S:.0f} s: {ids}"
    raise SystemExit(msg)


def counts(database: str) -> dict[str, Any]:
    """What the loop left that does not depend on chance: compared between the runs.

    Correlation tokens are random, and the sandbox channels draw their
    answers from them, so responses and nonconformities differ from run to
    run; incidents, compliance records and callbacks do not.
    """
    with psycopg.connect(db_url(database)) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None

        return {
            "incidents": one("SELECT count(*) FROM incident"),
            "compliance": one("SELECT count(*) FROM compliance_record"),
            "callbacks": one("SELECT count(*) FROM outbox_item WHERE kind = 'callback'"),
            "not_sent": one("SELECT count(*) FROM outbox_item WHERE state <> 'sent'"),
        }


def clean_redis(conn: Redis, prefix: str) -> None:
    """Delete every key this run made (its prefix), and its queues from RQ's set."""
    doomed = list(conn.scan_iter(match=f"*{prefix}*", count=1000))
    for start in range(0, len(doomed), 500):
        conn.delete(*doomed[start : start + 500])
    for member in conn.smembers("rq:queues"):
        if prefix.encode() in member:
            conn.srem("rq:queues", member)


def run(workers: int, args: argparse.Namespace) -> tuple[float, float, dict[str, Any]]:
    """One run on a fresh database and prefix: (wall s, workers' CPU s, counts).

    Prints the stage, kind and step breakdown (see the module's docstring).
    """
    import connectors  # noqa: F401  registers the sandbox
    from core.conf import load_config
    from core.runtime import open_runtime
    from workers import queue
    from workers.jobs import job_key

    tag = uuid.uuid4().hex[:8]
    database = f"qloop_bench_scale_{workers}w_{tag}"
    prefix = f"bench-scale-{tag}-"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    conn = Redis.from_url(REDIS_URL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="qloop-bench-scale-") as tmp:
            config = write_config(Path(tmp), database, args.incidents, args.sources)
            cfg = load_config(config)
            rt = open_runtime(cfg)  # migrate once, before the workers race to
            for name in rt.source_names():  # the sandbox ITSM generates its data: not timed
                probe = getattr(rt.source(name), "probe", None)
                if probe:
                    probe()
            rt.close()
            os.environ["QLOOP_QUEUE_PREFIX"] = prefix
            logs = [Path(tmp) / f"worker{i}.log" for i in range(workers)]
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            pg = PgCpu(database)
            pg.start()
            procs = [start_worker(config, prefix, log) for log in logs]
            per_kind: dict[str, float] = defaultdict(float)
            per_step: dict[str, float] = defaultdict(float)
            waited: dict[str, float] = defaultdict(float)
            stage_wall: dict[str, float] = defaultdict(float)
            stage_busy: dict[str, float] = defaultdict(float)
            started = time.perf_counter()
            for _ in range(args.cycles):
                for i, stage in enumerate(stages(cfg, max(workers, args.parts))):
                    label = f"{i + 1}.{stage[0][0]}"
                    began = time.perf_counter()
                    done = [queue.enqueue(conn, str(config), k, n, retry=None) for k, n in stage]
                    if not all(d.queued for d in done):
                        msg = f"not queued: {done}"
                        raise SystemExit(msg)
                    finished = wait_for(conn, [d.job_id for d in done], procs)
                    stage_wall[label] += time.perf_counter() - began
                    for job, (kind, name) in zip(finished, stage, strict=True):
                        if job.started_at and job.ended_at:
                            took = (job.ended_at - job.started_at).total_seconds()
                            per_kind[kind] += took
                            stage_busy[label] += took
                        summary = str(job.return_value() or "")
                        for step, seconds, held in step_times(summary, job_key(kind, name)):
                            per_step[step] += seconds
                            waited[step] += held
            wall = time.perf_counter() - started
            stop_workers(procs)
            pg_cpu = pg.stop()
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
            for log in logs:
                text = log.read_text(encoding="utf-8", errors="replace")
                if "Traceback" in text:
                    print(text[-3000:])
                    msg = f"{log.name}: a worker logged a traceback"
                    raise SystemExit(msg)
            found = counts(database)
    finally:
        stop_workers(procs)
        os.environ.pop("QLOOP_QUEUE_PREFIX", None)
        clean_redis(conn, prefix)
        conn.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    print(
        f"  {workers} worker(s): {wall:7.1f} s wall, {cpu:7.1f} s CPU (workers), "
        f"{pg_cpu:6.1f} s CPU (PostgreSQL), {args.incidents / wall:6.0f} incidents/s, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print("    stage: wall s / busy s / idle worker-s")
    for label, seconds in stage_wall.items():
        idle = workers * seconds - stage_busy[label]
        print(f"      {label:<16} {seconds:7.1f} {stage_busy[label]:7.1f} {idle:7.1f}")
    print("    job time by kind: " + ", ".join(f"{k} {v:.1f} s" for k, v in per_kind.items()))
    print("    step time: " + ", ".join(f"{k} {v:.1f} s" for k, v in per_step.items()))
    if any(waited.values()):
        print(
            "    waiting for a shared step: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in waited.items() if v)
        )
    print(f"    left: {found}")
    return wall, cpu, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=2, help="sandbox sources sharing them")
    parser.add_argument("--cycles", type=int, default=3, help="rounds of the loop")
    parser.add_argument("--parts", type=int, default=2, help="evaluate partitions (>= workers)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally) when stopped
    if args.incidents < 1 or args.sources < 1 or args.cycles < 1 or args.parts < 1:
        parser.error("--incidents, --sources, --cycles and --parts must be at least 1")
    print(
        f"{args.incidents} sandbox incidents over {args.sources} source(s), {args.cycles} cycles, "
        f"PostgreSQL + Redis, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    results = {w: run(w, args) for w in args.workers}
    first, last = results[args.workers[0]], results[args.workers[-1]]
    if first[2] != last[2] or first[2]["not_sent"]:
        msg = f"the runs left different state: {first[2]} vs {last[2]}"
        raise SystemExit(msg)
    print(
        f"speedup={first[0] / last[0]:.2f} cpu_ratio={last[1] / first[1]:.2f} "
        f"workers={args.workers[0]}->{args.workers[-1]} incidents={args.incidents}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
