"""Benchmark: evaluate + indicators of a large month, and its streamed export (CSV, JSONL).

    python bench/evaluate_1m.py [--incidents 1000000] [--database-url URL]

Setup (not timed): a fresh database (SQLite in a temporary folder by
default, or ``--database-url``, whose tables are dropped first), the demo's
sandbox month with ``--incidents`` incidents, pulled into the store. Then,
timed, with the peak RSS of each phase:

* ``evaluate``: the loop's evaluate step over every incident, then the
  month's indicators from the stored records (``qloop report``'s figures);
* ``export csv``, ``export jsonl`` and ``export xlsx``: ``qloop export`` of
  the month (incidents, indicators, nonconformities) into a temporary
  folder, with the CPU seconds of each (steadier than wall time on a
  shared machine).

The evaluate phases print their CPU seconds too (this process's; on
PostgreSQL the server's are not in them). The last lines are
``evaluate_1m_s=… cpu_s=…`` and ``export_1m_s=… cpu_s=…`` (the slower of
CSV and JSONL). With fewer than a million incidents the figures are scaled
linearly to 1M and say ``extrapolated_from=N``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import connectors  # noqa: F401
from api.demo import demo_config
from core.export import period_indicators
from core.export.month import export_month
from core.loop import evaluate, pull
from core.runtime import open_runtime
from core.store.models import Base

PAGE = 4096
MILLION = 1_000_000


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


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
    args = parser.parse_args()
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

        sampler.phase = "evaluate"
        t0, c0 = time.perf_counter(), time.process_time()
        evaluated = evaluate(rt)
        if evaluated.errors:
            msg = f"evaluate: {evaluated.errors}"
            raise SystemExit(msg)
        times["evaluate step"] = time.perf_counter() - t0
        cpus["evaluate step"] = time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        with rt.db.session() as s:
            for name, pol in sorted(rt.policies.items()):
                ind = period_indicators(
                    s, policy=name, version=pol.version, month=month, now=rt.now(), rules=pol
                )
                print(f"  policy {name}: {ind.resolved} resolved in {month}")
        times["indicators"] = time.perf_counter() - t1
        cpus["indicators"] = time.process_time() - c1
        times["evaluate"] = time.perf_counter() - t0
        cpus["evaluate"] = time.process_time() - c0

        for fmt in ("csv", "jsonl", "xlsx"):
            sampler.phase = f"export {fmt}"
            out = work / f"out-{fmt}"
            t0, c0 = time.perf_counter(), time.process_time()
            files = export_month(rt, month, fmt, out, actor="bench")
            times[f"export {fmt}"] = time.perf_counter() - t0
            cpus[f"export {fmt}"] = time.process_time() - c0
            size = sum(f.stat().st_size for f in files) / 2**20
            print(f"  export {fmt}: {len(files)} files, {size:.0f} MB")
        sampler.stop.set()
        sampler.join()
        rt.close()

    print(f"\n  {'phase':<14} {'seconds':>8} {'per s':>10} {'cpu s':>8} {'peak MB':>8}")
    for phase, secs in times.items():
        peak = sampler.peaks.get(phase.split(" ")[0] if phase != "indicators" else "evaluate")
        peak = sampler.peaks.get(phase, peak or 0.0)
        cpu = f"{cpus[phase]:8.2f}" if phase in cpus else f"{'':8}"
        print(f"  {phase:<14} {secs:8.2f} {n / secs:10.0f} {cpu} {peak:8.0f}")
    scale = MILLION / n
    note = "" if n == MILLION else f" extrapolated_from={n}"
    export_s = max(times["export csv"], times["export jsonl"])
    export_cpu = max(cpus["export csv"], cpus["export jsonl"])
    peak_eval = sampler.peaks["evaluate"]
    peak_export = max(sampler.peaks["export csv"], sampler.peaks["export jsonl"])
    print(
        f"evaluate_1m_s={times['evaluate'] * scale:.0f} cpu_s={cpus['evaluate'] * scale:.0f} "
        f"peak_rss_mb={peak_eval:.0f}{note}"
    )
    print(
        f"export_1m_s={export_s * scale:.0f} cpu_s={export_cpu * scale:.0f} "
        f"peak_rss_mb={peak_export:.0f}{note}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
