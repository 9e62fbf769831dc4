"""Benchmark: the monthly quality report of a big sandbox month, per format.

    python bench/report.py [--incidents 100000] [--store DIR] [--formats html,pdf,xlsx]

The store is the demo's sandbox month with N incidents run through the
whole loop on SQLite (as ``bench/loop.py`` does, failures off). Building it
takes minutes, so ``--store DIR`` keeps it and reuses it on the next run
(``DIR/qloop.db``). Then, each in a fresh child process so that the peak
memory is its own: the baseline (the plain CSV export of the same month,
``export_month``), and for each format ``build_report`` + ``render_report``
at one fixed ``as_of``. Printed per format: seconds, peak RSS (MB), the
output's size, CPU seconds (steadier on a
shared machine) and the ratios to the baseline; the aim is under 30 s and
under 500 MB per format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import connectors  # noqa: F401
from api.demo import demo_config
from connectors.sandbox import without_failures
from core.conf.model import AppConfig
from core.export.month import export_month
from core.loop import run_once
from core.report import build_report, render_report
from core.runtime import open_runtime

PAGE = 4096
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)
"""One fixed instant after the sandbox month: every run judges the same facts."""
AIM_SECONDS = 30.0
AIM_MB = 500.0


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class PeakSampler(threading.Thread):
    """Samples RSS every 10 ms and keeps the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())


def store_config(store: Path, incidents: int) -> AppConfig:
    """The demo's sandbox configuration on ``store/qloop.db``, injected failures off."""
    cfg = demo_config(store, incidents)
    return without_failures(cfg)


def prepare(store: Path, incidents: int) -> None:
    """Run the sandbox month through the loop into ``store`` unless it is already there."""
    done = store / "prepared.json"
    if done.exists() and json.loads(done.read_text()).get("incidents") == incidents:
        return
    store.mkdir(parents=True, exist_ok=True)
    for old in store.glob("qloop.db*"):
        old.unlink()
    started = time.perf_counter()
    rt = open_runtime(store_config(store, incidents))
    try:
        for _ in range(4):
            summary = run_once(rt)
            if (
                summary.sent() == 0
                and summary.total("created") == 0
                and summary.total("evaluated") == 0
            ):
                break
    finally:
        rt.close()
    done.write_text(json.dumps({"incidents": incidents}) + "\n")
    print(f"store prepared: {incidents} incidents in {time.perf_counter() - started:.0f} s")


def _measure(store: str, incidents: int, what: str, out: str, queue: Any) -> None:
    rt = open_runtime(store_config(Path(store), incidents), existing=True)
    month = str(next(iter(rt.config.sources.values())).options["month"])
    sampler = PeakSampler()
    sampler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    if what == "csv":
        # the incidents, indicators and nonconformities files, as `qloop export` writes them
        paths = export_month(rt, month, "csv", Path(out), actor="bench", as_of=AS_OF)
        data = b"".join(p.read_bytes() for p in paths)
    else:
        report = build_report(rt, month, as_of=AS_OF)
        data = render_report(report, what)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    sampler.stop.set()
    sampler.join()
    rt.close()
    peak = max(sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    queue.put((seconds, cpu, peak, len(data), hashlib.sha256(data).hexdigest()))


Measured = tuple[float, float, float, int, str]


def measure(store: Path, incidents: int, what: str) -> Measured:
    """(seconds, CPU seconds, peak MB, bytes, sha256) of one format in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="qloop-bench-report-") as out:
        proc = ctx.Process(target=_measure, args=(str(store), incidents, what, out, queue))
        proc.start()
        while True:
            try:
                result: Measured = queue.get(timeout=1)
                break
            except Empty:
                if not proc.is_alive():
                    msg = f"{what}: the measuring process died (exit {proc.exitcode})"
                    raise RuntimeError(msg) from None
        proc.join()
    if proc.exitcode != 0:
        msg = f"{what}: the measuring process exited with {proc.exitcode}"
        raise RuntimeError(msg)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--store", type=Path, default=None, help="keep the store here (reused)")
    parser.add_argument("--formats", default="html,pdf,xlsx")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    with tempfile.TemporaryDirectory(prefix="qloop-bench-store-") as tmp:
        store = args.store or Path(tmp)
        prepare(store, args.incidents)
        base_s, base_cpu, base_mb, base_size, base_digest = measure(store, args.incidents, "csv")
        print(f"\n{args.incidents} incidents, report as of {AS_OF.isoformat()}")
        print(
            f"  {'format':<8} {'seconds':>8} {'cpu s':>8} {'peak MB':>8} {'bytes':>11} "
            f"{'x time':>7} {'x cpu':>7} {'x memory':>9}  sha256"
        )
        print(
            f"  {'csv':<8} {base_s:8.2f} {base_cpu:8.2f} {base_mb:8.0f} {base_size:11d} "
            f"{1:7.2f} {1:7.2f} {1:9.2f}  {base_digest[:16]} (baseline: the CSV export)"
        )
        missed = []
        for fmt in formats:
            secs, cpu, peak, size, digest = measure(store, args.incidents, fmt)
            print(
                f"  {fmt:<8} {secs:8.2f} {cpu:8.2f} {peak:8.0f} {size:11d} "
                f"{secs / base_s:7.2f} {cpu / base_cpu:7.2f} {peak / base_mb:9.2f}  {digest[:16]}"
            )
            if secs >= AIM_SECONDS or peak >= AIM_MB:
                missed.append(fmt)
        if missed:
            print(f"over the aim ({AIM_SECONDS:.0f} s, {AIM_MB:.0f} MB): {', '.join(missed)}")
            return 1
        print(f"every format under {AIM_SECONDS:.0f} s and {AIM_MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
