"""Benchmark: evaluate + indicators of a large month, and its streamed export (CSV, JSONL).

    python bench/evaluate_1m.py [--incidents 1000000] [--database-url URL] [--processes 2]

Setup (not timed): a fresh database (SQLite in a temporary folder by
default, or ``--database-url``, whose tables are dropped first), the demo's
sandbox month with ``--incidents`` incidents, pulled into the store. Then,
timed, with the peak RSS of each phase:

* ``evaluate 1p``: the loop's evaluate step over every incident in this
  process, then the month's indicators from the stored records (``qloop
  report``'s figures);
* ``evaluate Np``: the same again from the same start (the records and the
  incidents' bookkeeping reset, not timed) with the step split into
  ``--processes`` id ranges run by child processes (fewer when a range
  would hold fewer than ``MIN_PER_PROCESS`` incidents; the last line says
  how many); the records it stores are compared with the one-process
  run's (sha256 of the ordered rows, row ids aside; not timed) and the
  bench stops if they differ;
* ``export csv``, ``export jsonl`` and ``export xlsx``: ``qloop export`` of
  the month (incidents, indicators, nonconformities) into a temporary
  folder, with the CPU seconds of each (steadier than wall time on a
  shared machine);
* ``export csv Np`` and ``export jsonl Np``: the same with
  ``export_processes`` = ``--processes`` (the incidents file cut into that
  many parts, the later ones written by child processes; fewer when a part
  would hold fewer than ``core.export.split.MIN_PER_PROCESS`` rows); the
  files' bytes are compared with the one-process run's (sha256, not timed)
  and the bench stops if they differ.

The evaluate phases print their CPU seconds too: this process's and its
children's (on PostgreSQL the server's are not in them); their peak RSS is
this process's plus its children's. The last lines are
``evaluate_1m_s=… cpu_s=…`` (the split run; the one-process run's line,
``evaluate_1p_1m_s=…``, comes before it) and ``export_1m_s=… cpu_s=…``
(the slower of CSV and JSONL, in ``--processes`` processes; the
one-process line, ``export_1p_1m_s=…``, comes before it; CPU and peak RSS
of the parent and its children). With fewer than a million incidents the
figures are scaled linearly to 1M and say ``extrapolated_from=N``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import delete, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import connectors  # noqa: F401
from api.demo import demo_config
from core.export import period_indicators
from core.export.month import export_month
from core.export.rows import export_split_keys
from core.export.split import MIN_PER_PROCESS as MIN_ROWS_PER_PROCESS
from core.loop import evaluate, pull
from core.loop.evaluate_parallel import MIN_PER_PROCESS
from core.runtime import Runtime, open_runtime
from core.store.models import Base, ComplianceRecord, IncidentEvaluation

PAGE = 4096
MILLION = 1_000_000


def files_digest(files: list[Path]) -> str:
    """sha256 of the files' names and bytes, streamed."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def rss_mb() -> float:
    """This process's RSS and its children's (the evaluate step's forked processes)."""
    pids = [str(os.getpid())]
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:  # no such file on this kernel, or the thread ended
            continue
    pages = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                pages += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):  # the child ended meanwhile
            continue
    return pages * PAGE / 2**20


def cpu_s() -> float:
    """User + system CPU seconds of this process and of its children that ended."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def records_digest(rt: Runtime) -> str:
    """sha256 of the compliance records ordered by incident and policy, row ids aside."""
    cols = [c for c in ComplianceRecord.__table__.columns if c.name != "id"]
    order = (ComplianceRecord.incident_id, ComplianceRecord.policy, ComplianceRecord.policy_version)
    digest = hashlib.sha256()
    with rt.db.engine.connect() as conn:  # streamed: a month of records is never held at once
        rows = conn.execution_options(yield_per=2000).execute(select(*cols).order_by(*order))
        for row in rows:
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def forget_evaluations(rt: Runtime) -> None:
    """Back to the state before the evaluate step: no records, nothing evaluated."""
    with rt.db.session() as s:
        s.execute(delete(ComplianceRecord))
        s.execute(delete(IncidentEvaluation))


class PeakSampler(threading.Thread):
    """Samples RSS every 10 ms and keeps the peak per named phase."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.phase = "setup"
        self.peaks: dict[str, float] = defaultdict(float)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peaks[self.phase] = max(self.peaks[self.phase], rss_mb())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=MILLION)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--processes", type=int, default=2, help="of the split evaluate and export runs"
    )
    args = parser.parse_args()
    if args.processes < 2:
        parser.error("--processes: at least 2 (the one-process run is always made)")
    n = args.incidents
    sampler = PeakSampler()
    sampler.start()
    times: dict[str, float] = {}
    cpus: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="qloop-bench-1m-") as tmp:
        work = Path(tmp)
        cfg = demo_config(work, n)
        cfg = dataclasses.replace(
            cfg,
            sources={
                k: dataclasses.replace(
                    v, options={**v.options, "failure_rate": 0, "page_size": 1000}
                )
                for k, v in cfg.sources.items()
            },
        )
        if args.database_url:
            cfg = dataclasses.replace(cfg, database_url=args.database_url)
        rt = open_runtime(cfg)
        if args.database_url:  # start from empty tables, migrated again from nothing
            Base.metadata.drop_all(rt.db.engine)
            with rt.db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            rt.close()
            rt = open_runtime(cfg)
        month = next(iter(cfg.sources.values())).options["month"]
        started = time.perf_counter()
        for name in rt.source_names():
            result = pull(rt, name)
            if result.errors:
                msg = f"pull {name}: {result.errors}"
                raise SystemExit(msg)
        setup_s = time.perf_counter() - started
        print(f"{n} incidents of {month} pulled in {setup_s:.1f} s ({rt.db.dialect}; not timed)")

        at = rt.now()  # both runs evaluate as of the same instant: their records compare
        rt.clock = lambda: at
        digests: dict[str, str] = {}
        for run, processes in (("evaluate 1p", 1), (f"evaluate {args.processes}p", args.processes)):
            if digests:
                forget_evaluations(rt)  # the split run starts where the first one did
            sampler.phase = run
            t0, c0 = time.perf_counter(), cpu_s()
            evaluated = evaluate(rt, processes=processes)
            if evaluated.errors:
                msg = f"{run}: {evaluated.errors}"
                raise SystemExit(msg)
            times[f"{run} step"] = time.perf_counter() - t0
            cpus[f"{run} step"] = cpu_s() - c0
            t1, c1 = time.perf_counter(), cpu_s()
            with rt.db.session() as s:
                for name, pol in sorted(rt.policies.items()):
                    ind = period_indicators(
                        s, policy=name, version=pol.version, month=month, now=rt.now(), rules=pol
                    )
                    print(f"  {run}, policy {name}: {ind.resolved} resolved in {month}")
            times[f"{run} indic."] = time.perf_counter() - t1
            cpus[f"{run} indic."] = cpu_s() - c1
            times[run] = time.perf_counter() - t0
            cpus[run] = cpu_s() - c0
            sampler.phase = "compare"  # not timed, and not in the evaluate phase's peak
            digests[run] = records_digest(rt)
        if len(set(digests.values())) != 1:
            msg = f"the split run stored other records than one process: {digests}"
            raise SystemExit(msg)
        split = f"evaluate {args.processes}p"
        print(f"  records of both runs identical: sha256 {digests['evaluate 1p'][:16]}…")

        exported: dict[str, str] = {}
        with rt.db.session() as s:  # the rows of the largest policy's file: how many processes
            export_rows = max(
                export_split_keys(
                    s, policy=name, version=pol.version, month=month, parts=1, least=1
                )[0]
                for name, pol in rt.policies.items()
            )
        runs = [(f, 1) for f in ("csv", "jsonl", "xlsx")]
        runs += [(f, args.processes) for f in ("csv", "jsonl")]
        for fmt, processes in runs:
            run = f"export {fmt}" + (f" {processes}p" if processes > 1 else "")
            sampler.phase = run
            out = work / f"out-{fmt}-{processes}"
            t0, c0 = time.perf_counter(), cpu_s()
            files = export_month(rt, month, fmt, out, actor="bench", processes=processes)
            times[run] = time.perf_counter() - t0
            cpus[run] = cpu_s() - c0
            size = sum(f.stat().st_size for f in files) / 2**20
            print(f"  {run}: {len(files)} files, {size:.0f} MB")
            sampler.phase = "compare"  # not timed: the split export's bytes are one process's
            digest = files_digest(files)
            if exported.setdefault(fmt, digest) != digest:
                msg = f"{run} wrote other bytes than one process"
                raise SystemExit(msg)
            shutil.rmtree(out)
        print(f"  export in {args.processes} processes: the same bytes as in one (sha256)")
        sampler.stop.set()
        sampler.join()
        rt.close()

    print(f"\n  {'phase':<18} {'seconds':>8} {'per s':>10} {'cpu s':>8} {'peak MB':>8}")
    for phase, secs in times.items():
        peak = sampler.peaks.get(phase, sampler.peaks.get(" ".join(phase.split(" ")[:2]), 0.0))
        print(f"  {phase:<18} {secs:8.2f} {n / secs:10.0f} {cpus[phase]:8.2f} {peak:8.0f}")
    scale = MILLION / n
    note = "" if n == MILLION else f" extrapolated_from={n}"
    used_export = max(1, min(args.processes, export_rows // MIN_ROWS_PER_PROCESS))
    export_lines = []
    for label, suffix in (("export_1p_1m_s", ""), ("export_1m_s", f" {args.processes}p")):
        csv, jsonl = f"export csv{suffix}", f"export jsonl{suffix}"
        export_lines.append(
            f"{label}={max(times[csv], times[jsonl]) * scale:.0f} "
            f"cpu_s={max(cpus[csv], cpus[jsonl]) * scale:.0f} "
            f"peak_rss_mb={max(sampler.peaks[csv], sampler.peaks[jsonl]):.0f}{note}"
            + (f" processes={used_export}" if suffix else "")
        )
    used = max(1, min(args.processes, n // MIN_PER_PROCESS))  # fewer: not worth a process
    for label, run in (("evaluate_1p_1m_s", "evaluate 1p"), ("evaluate_1m_s", split)):
        print(
            f"{label}={times[run] * scale:.0f} cpu_s={cpus[run] * scale:.0f} "
            f"peak_rss_mb={sampler.peaks[run]:.0f}{note}"
            + (f" processes={used}" if run == split else "")
        )
    print("\n".join(export_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
