"""Side-by-side Jira pulls of two checkouts against one warmed fake: ``pull_pair.py A B``.

One fake Jira (``bench/ingest.py``'s, in a child process) serves N issues;
each round runs, alternately, a first sync through ``A/bench/pull_once.py``
and ``B/bench/pull_once.py`` (each a fresh process, each checkout's own
code), with and/or without ``pull_process``. Per run it prints the pull's
CPU seconds (both processes with ``pull_process``; the child's alone),
wall seconds, peak summed RSS and PSS, and the sha256 of the stored rows
(``incident`` in external-id order, every column but the id and the
ingest instants, the JSON columns as stored text; ``status_event`` by
(external id, seq); ``rejected_record`` but its instants), so a change
that alters what is stored shows at once. Then the min and median of
each (checkout, mode).

    python bench/pull_pair.py /work/wt/x-base /work/wt/x --n 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import ChildServer, warm_jira
from tests.fakes.jira import source_options
from tests.utils.loop import sandbox_config

INCIDENT = (
    "SELECT source, external_id, key, title, service, customer, contact_name, contact_phone,"
    " contact_email, phone_key, email_key, priority, status, category, created_at, updated_at,"
    " first_response_at, resolved_at, closed_at, source_sla, raw, fingerprint, revision,"
    " planned_revision, evaluated_revision FROM incident ORDER BY source, external_id"
)
EVENTS = (
    "SELECT i.external_id, e.seq, e.at, e.status, e.category, e.observed FROM status_event e"
    " JOIN incident i ON i.id = e.incident_id ORDER BY i.external_id, e.seq"
)
REJECTED = (
    "SELECT source, key, field, error, source_updated_at, times, resolved_at"
    " FROM rejected_record ORDER BY source, key"
)


def digest(db: Path) -> str:
    """sha256 of the stored rows (module docstring), the three tables' digests joined."""
    conn = sqlite3.connect(db)
    try:
        parts = []
        for sql in (INCIDENT, EVENTS, REJECTED):
            h = hashlib.sha256()
            for row in conn.execute(sql):
                h.update(repr(row).encode())
            parts.append(h.hexdigest()[:12])
        return "/".join(parts)
    finally:
        conn.close()


def run(root: Path, tmp: Path, url: str, child: bool, extra: dict[str, Any]) -> dict[str, Any]:
    tmp.mkdir(parents=True)
    opts = {
        "type": "jira_sm",
        **source_options(url, page_size=100),
        "pull_process": child,
        **extra,
    }
    db = tmp / "pull.db"
    path = sandbox_config(f"sqlite:///{db}", tmp, extra={"sources": {"jira": opts}})
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "pull_once.py"), str(path), "jira"],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
    )
    if done.returncode != 0:
        msg = f"{root}: pull failed\n{done.stderr[-3000:]}"
        raise SystemExit(msg)
    f: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    f["digest"] = digest(db)
    db.unlink()
    return f


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="child,one", help="child, one or both (comma)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--windows", action="store_true", help="backfill in 8 windows x 8")
    args = parser.parse_args()
    modes = [m == "child" for m in args.modes.split(",")]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    extra: dict[str, Any] = {}
    if args.windows:
        extra = {
            "backfill_from": (start - timedelta(days=1)).isoformat(),
            "backfill_parts": 8,
            "backfill_workers": 8,
        }
    server = ChildServer("jira", args.n, start)
    results: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="qloop-pair-") as name:
            tmp = Path(name)
            opts = {"type": "jira_sm", **source_options(server.url, page_size=100)}
            warm_jira(server, tmp / "warm", opts)
            if args.latency_ms:
                server.ask("latency_ms", args.latency_ms)
            k = 0
            for r in range(args.rounds):
                for child in modes:
                    for root in args.roots:
                        k += 1
                        f = run(root, tmp / f"run{k}", server.url, child, extra)
                        results.setdefault((str(root), child), []).append(f)
                        print(
                            f"round {r} {root.name:<16} {'child' if child else 'one  '}"
                            f" cpu {f['cpu']:6.2f} (child {f['cpu_child']:5.2f})"
                            f" wall {f['seconds']:6.2f} peak {f['peak']:4.0f} MB"
                            f" pss {f['peak_pss']:4.0f} MB created {f['created']}"
                            f" rows {f['digest']}",
                            flush=True,
                        )
    finally:
        server.close()
    pages = args.n / 100
    for (root, child), runs in results.items():
        cpu = [f["cpu"] for f in runs]
        kid = [f["cpu_child"] for f in runs]
        parent = [f["cpu"] - f["cpu_child"] for f in runs]
        wall = [f["seconds"] for f in runs]
        print(
            f"{Path(root).name:<16} {'child' if child else 'one  '}"
            f" cpu min {min(cpu):.2f} med {statistics.median(cpu):.2f}"
            f" ({1000 * statistics.median(cpu) / pages:.1f} ms/page;"
            f" parent {1000 * statistics.median(parent) / pages:.1f},"
            f" child {1000 * statistics.median(kid) / pages:.1f})"
            f" wall med {statistics.median(wall):.2f}"
            f" pss max {max(f['peak_pss'] for f in runs):.0f}"
            f" digests {sorted({f['digest'] for f in runs})}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
