"""One ``pull`` of one source, timed in this fresh process: ``pull_once.py CONFIG SOURCE``.

``bench/ingest.py`` runs qloop's pulls through this script, so each is
measured in a process holding only what a pull needs (qloop's imports,
the runtime, the pull), not the benchmark's fakes or its earlier runs'
heap. It prints one JSON line: records created, wall and CPU seconds of
the pull, RSS before the pull (imports and runtime open) and its peak.

The store is created and migrated first by a child process, as ``qloop
run`` or ``qloop serve`` does once when a deployment starts: the process
measured opens a store already at the newest schema, like every worker
after the first, so it does not carry Alembic (~11 MB) it would not load.

A source with ``pull_process`` fetches and converts in a child process
(:mod:`connectors.kit.child`): its CPU seconds are added to the pull's
(``cpu``; ``cpu_child`` alone), and the peak is that of the *sum* of both
processes' RSS (the child's pages shared with the parent counted twice, so
an upper bound); ``peak_pss`` is the peak of their summed PSS (each shared
page split between the processes sharing it), sampled every 0.5 s.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import connectors  # noqa: F401  registers the connector types
from core.conf import load_config
from core.loop import pull
from core.runtime import open_runtime

PAGE = 4096


def rss_mb() -> float:
    """The RSS of this process and of its children (a pull's child process), summed."""
    total = 0
    for pid in ["self", *_children()]:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a child that just ended
    return total * PAGE / 2**20


def pss_mb() -> float:
    """The PSS of this process and of its children, summed."""
    total = 0
    for pid in ["self", *_children()]:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total += next(int(t.split()[1]) for t in fh if t.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def _children() -> list[str]:
    found: list[str] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as fh:
                found.extend(fh.read().split())
        except FileNotFoundError:
            continue
    return found


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


MIGRATE = (
    "import sys; from pathlib import Path; import connectors; from core.conf import load_config; "
    "from core.store import open_database; "
    "open_database(load_config(Path(sys.argv[1])).database_url).dispose()"
)


def main(config: str, source: str) -> int:
    subprocess.run([sys.executable, "-c", MIGRATE, config], check=True, cwd=ROOT)
    rt = open_runtime(load_config(Path(config)))
    try:
        before = peak = rss_mb()
        peak_pss = pss_mb()
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_pss
            n = 0
            while not stop.wait(0.01):
                peak = max(peak, rss_mb())
                n += 1
                if n % 50 == 0:
                    peak_pss = max(peak_pss, pss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0, c0, k0 = time.perf_counter(), time.process_time(), _child_cpu()
        result = pull(rt, source)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        child_cpu = _child_cpu() - k0  # the pull's child process, ended and waited for
        stop.set()
        sampler.join()
    finally:
        rt.close()
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    figures = {
        "created": result.counts["created"],
        "seconds": seconds,
        "cpu": cpu + child_cpu,
        "cpu_child": child_cpu,
        "rss_before": before,
        "peak": peak,
        "peak_pss": peak_pss,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
