"""Benchmark: N sandbox incidents through the whole loop on SQLite.

    python bench/loop.py 10000 100000 [--save-baseline]

For each N: a fresh SQLite database, the demo's sandbox config with N
incidents, the loop run until it converges; per step its time, incidents
per second, CPU seconds (the process's, all threads: steadier than
wall time on a shared machine) and peak RSS (in the loop's first round:
RSS seldom falls, so later rounds would show the run's high-water mark in
every step; the whole run's peak counts every round and the sandbox's
generation before the clock); the last line for the whole loop is
``incidents_per_s=… peak_rss_mb=…`` followed by the ratio to the baseline
recorded in bench/baseline.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config
import connectors  # noqa: F401
from connectors.sandbox import without_failures
from core.conf import AppConfig, load_config
from core.loop import run_once
from core.loop.common import StepResult
from core.runtime import open_runtime

BASELINE = Path(__file__).with_name("baseline.json")
PAGE = 4096


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def loop_config(workdir: Path, n: int) -> AppConfig:
    """The demo's config (config/sandbox.yaml, a fresh SQLite store) with ``n`` incidents.

    Built here as ``api.demo.demo_config`` builds it, without importing the
    demo: its report and export writers (xlsxwriter, fpdf2, Pillow: ~24 MB)
    are not what a loop process (``qloop run``, a worker) loads.
    """
    env = {**os.environ, "QLOOP_DATABASE_URL": f"sqlite:///{workdir / 'qloop.db'}"}
    cfg = load_config(config.path("sandbox.yaml"), env=env)
    sources = {
        k: dataclasses.replace(v, options={**v.options, "incidents": n})
        for k, v in cfg.sources.items()
    }
    return dataclasses.replace(cfg, state_dir=workdir / "state", sources=sources)


class PeakSampler(threading.Thread):
    """Samples RSS every 10 ms and keeps the peak per named phase."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.phase = "start"
        self.peaks: dict[str, float] = defaultdict(float)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peaks[self.phase] = max(self.peaks[self.phase], rss_mb())


def bench(n: int) -> tuple[float, float, list[tuple[str, float, float, float]]]:
    with tempfile.TemporaryDirectory(prefix="qloop-bench-") as tmp:
        cfg = loop_config(Path(tmp), n)
        # measure qloop, not the sandbox's injected failures and their retry waits
        cfg = without_failures(cfg)
        rt = open_runtime(cfg)
        sampler = PeakSampler()
        sampler.start()
        times: dict[str, float] = defaultdict(float)
        cpu: dict[str, float] = defaultdict(float)
        order: list[str] = []
        last_cpu = [0.0]
        rounds = [0]

        def progress(name: str, result: StepResult, elapsed: float) -> None:
            key = name.split(" ")[0] if name.startswith(("pull", "collect")) else name
            if key not in times:
                order.append(key)
            times[key] += elapsed
            now_cpu = time.process_time()
            cpu[key] += now_cpu - last_cpu[0]
            last_cpu[0] = now_cpu
            # a step's peak is taken in the first round: RSS seldom falls, so in later
            # rounds every step would show the whole run's high-water mark
            at = key if rounds[0] == 0 else "later rounds"
            sampler.peaks[at] = max(sampler.peaks[at], sampler.peaks.pop("running", 0.0))
            sampler.phase = "running"

        # the sandbox ITSM generating its data is the remote's cost, not qloop's:
        # its access check (``probe``) generates it before the clock starts
        for name in rt.source_names():
            probe = getattr(rt.source(name), "probe", None)
            if probe:
                probe()
        sampler.phase = "running"
        started = time.perf_counter()
        last_cpu[0] = time.process_time()
        for _ in range(4):
            summary = run_once(rt, progress=progress)
            rounds[0] += 1
            if (
                summary.sent() == 0
                and summary.total("created") == 0
                and summary.total("evaluated") == 0
            ):
                break
        total = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        rt.close()
        steps = [(k, times[k], cpu[k], sampler.peaks.get(k, 0.0)) for k in order]
        return total, max(sampler.peaks.values()), steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000])
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args()
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    for n in args.sizes:
        total, peak, steps = bench(n)
        print(f"\n{n} incidents")
        print(f"  {'step':<14} {'seconds':>8} {'incidents/s':>12} {'cpu s':>8} {'peak MB':>8}")
        for name, secs, cpu_secs, step_peak in steps:
            rate = n / secs if secs else float("inf")
            print(f"  {name:<14} {secs:8.2f} {rate:12.0f} {cpu_secs:8.2f} {step_peak:8.0f}")
        ips = n / total
        base = baseline.get(str(n))
        if base:
            print(
                f"  ratio to baseline: speed {ips / base['incidents_per_s']:.2f}, "
                f"memory {peak / base['peak_rss_mb']:.2f}"
            )
        else:
            print("  ratio to baseline: n/a (record one with --save-baseline)")
        if args.save_baseline:
            baseline[str(n)] = {"incidents_per_s": round(ips, 1), "peak_rss_mb": round(peak, 1)}
            BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
        print(f"incidents_per_s={ips:.0f} peak_rss_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
