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
"""

from __future__ import annotations

import json
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
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


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
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.01):
                peak = max(peak, rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0, c0 = time.perf_counter(), time.process_time()
        result = pull(rt, source)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        stop.set()
        sampler.join()
    finally:
        rt.close()
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    figures = {
        "created": result.counts["created"],
        "seconds": seconds,
        "cpu": cpu,
        "rss_before": before,
        "peak": peak,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
