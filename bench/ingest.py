"""Ingest benchmark: qloop's pull from the local fake Jira and GLPI, beside a bare loop.

Each fake ITSM runs in a child process (its memory and CPU are not counted),
and each qloop pull in a fresh process of its own (``bench/pull_once.py``:
its CPU seconds, its RSS before the pull and its peak are the pull's). For
each tool it runs a first sync of N incidents through the real ``pull``
step (connector + mapping + store, SQLite) and, against the same server, a
*bare loop*: the practical limit of the same work. For Jira that is plain
httpx paging the same search qloop sent (same JQL, fields, page size and
expanded changelog; pages only, no per-issue call), orjson, and an SQLite
upsert of the same incident and status rows with qloop's pragmas, one
transaction per page. The fake's issues all fit their expanded changelog
(``busy_every=0``), so neither side needs a per-issue call and both do the
same requests. GLPI's bare loop replays qloop's calls.

The fake Jira is the test fake with its JQL parsed once per query (it
walked every issue on each page) and every issue rendered before the timed
runs: a page costs it a slice and a join, well under the page latency, so
the client is what is measured. Its paging is the fake's own
(``nextPageToken`` absent on the last page, ``isLast``).

Then, at a page latency (default 20 ms), qloop's single stream, its
partitioned windows (backfill in 8 windows, 8 workers) and the bare loop
beside the ceiling of one token stream (page size / latency), with the CPU
qloop spends per page (the ceiling needs less than the latency), and qloop
at N/5 (run first) to show whether its peak memory grows with N.

qloop's Jira pulls set ``pull_process`` (pages fetched and converted in a
child process while the pull's process stores): their CPU seconds are both
processes', their peak the peak of both RSS summed (pages the child shares
with its parent counted twice), the summed PSS beside it. ``--one-process``
measures the pull without it.

    python bench/ingest.py                 # 50k Jira, 5k GLPI
    python bench/ingest.py --jira 2000 --glpi 500 --latency-ms 20

Its last line is ``ratio=R``: qloop / bare loop at 0 ms (Jira, the paging
case; rates in issues per wall second), aim 0.9 or better.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import orjson

import connectors  # noqa: F401  registers the connector types
from core.conf import load_config
from core.runtime import open_runtime
from core.store import open_database
from tests.fakes.glpi import APP_TOKEN, USER_TOKEN, FakeGlpi
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve
from tests.utils.loop import sandbox_config

PAGE = 4096
NOW = datetime.now(UTC).isoformat()


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class Peak:
    """Peak RSS while a block runs (sampled every 10 ms)."""

    def __enter__(self) -> Peak:
        self.base = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Recorder:
    """ASGI middleware: counts requests per route and keeps the first body/query per route."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.first: dict[str, tuple[str, bytes]] = {}

    @staticmethod
    def route(path: str) -> str:
        parts = [("{n}" if re.fullmatch(r"\d{2,}|[A-Z]+-\d+", p) else p) for p in path.split("/")]
        return "/".join(parts)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = f"{scope['method']} {self.route(scope['path'])}"
        self.counts[route] += 1
        if route in self.first:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        await self.app(scope, recording, send)
        self.first[route] = (scope["query_string"].decode(), b"".join(chunks))


class ChildServer:
    """A fake ITSM served from a child process, so its memory and CPU are not measured.

    The parent talks to it over a pipe: request counts (reset on read), the
    first request per route (for the bare loop to replay), the page latency.
    """

    def __init__(self, kind: str, n: int, start: datetime) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_child, args=(kind, n, start, child), daemon=True)
        self.proc.start()
        self.url: str = self.conn.recv()

    def ask(self, command: str, arg: object = None) -> Any:
        self.conn.send((command, arg))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("stop", None))
        self.proc.join(10)


class BenchJira(FakeJira):
    """The fake Jira, with its JQL parsed once per query while no issue changes.

    The test fake re-parses the JQL of every page and, in doing so, walks
    every issue (the known projects): O(N) per page, which at 50k made the
    fake, not the client, the bottleneck. Pages, tokens and the rendered
    issues are the fake's own (``nextPageToken`` / ``isLast`` on
    ``/rest/api/3/search/jql``).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._parsed: dict[tuple[str, int], Any] = {}
        super().__init__(**kwargs)

    def parse_jql(self, jql: str) -> Any:
        key = (jql, self._version)
        found = self._parsed.get(key)
        if found is None:
            found = self._parsed[key] = super().parse_jql(jql)
        return found

    def warm(self, fields: list[str], expand: str) -> None:
        """Render every issue as a search asking for ``fields`` and ``expand`` renders it."""
        shape = (tuple(fields), expand)
        with self.lock:
            for issue in self.issues.values():
                self._rendered(issue, shape)


def _serve_child(kind: str, n: int, start: datetime, conn: Any) -> None:
    fake: Any
    if kind == "jira":
        fake = BenchJira(issues=n, profile_zone="Asia/Shanghai", start=start, busy_every=0)
        rec = Recorder(fake.app)
    else:
        fake = FakeGlpi()
        fake.generate(n, start=start)
        rec = Recorder(fake.app())
    with serve(rec) as url:
        fake.server_url = url
        conn.send(url)
        while True:
            command, arg = conn.recv()
            if command == "stop":
                return
            if command == "counts":
                conn.send(sum(rec.counts.values()))
                rec.counts.clear()
            elif command == "first":
                conn.send(rec.first)
            elif command == "warm":
                fake.warm(*arg)
                conn.send(None)
            elif command == "latency_ms":
                if kind == "jira":
                    fake.latency_ms = arg
                else:
                    fake.latency = arg / 1000
                conn.send(None)


def store(path: Path) -> sqlite3.Connection:
    """A qloop-shaped SQLite store (migrated like qloop's), for the bare loop's inserts."""
    url = f"sqlite:///{path}"
    open_database(url).dispose()
    conn = sqlite3.connect(path)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")  # as qloop's own connections (core.store.db)
    return conn


def insert(conn: sqlite3.Connection, source: str, rows: list[tuple[dict[str, Any], list]]) -> None:
    """Insert incidents and their status events, one transaction per page."""
    with conn:
        ids = []
        for inc, _ in rows:
            cur = conn.execute(
                "INSERT INTO incident (source, external_id, key, title, priority, status, category,"
                " created_at, updated_at, source_sla, raw, fingerprint, ingested_at, changed_at,"
                " revision, planned_revision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?, 1, 0)",
                (
                    source, inc["id"], inc["key"], inc["title"], inc["priority"], inc["status"],
                    "new", inc["created"], inc["updated"], json.dumps(inc["raw"]), inc["id"],
                    NOW, NOW,
                ),
            )  # fmt: skip
            ids.append(cur.lastrowid)
        conn.executemany(
            "INSERT INTO status_event (incident_id, seq, at, status, category, observed)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            [
                (iid, seq, at, status, "new")
                for iid, (_, events) in zip(ids, rows, strict=True)
                for seq, (at, status) in enumerate(events)
            ],
        )


Figures = tuple[int, float, float, float, float]
"""(records, wall seconds, CPU seconds, peak RSS MB, RSS growth MB during the run)."""


PSS: dict[str, float] = {}
"""The peak summed PSS of each qloop run (by its directory), beside its summed RSS."""


def run_qloop(tmp: Path, name: str, source: dict[str, Any]) -> Figures:
    """First sync of ``source`` through qloop's pull, in a fresh process (bench/pull_once.py):
    its figures are the pull's alone, its memory what a process pulling needs. With
    ``pull_process`` the CPU is both processes' and the peak RSS their sum."""
    path = sandbox_config(f"sqlite:///{tmp / f'{name}.db'}", tmp, extra={"sources": {name: source}})
    script = Path(__file__).resolve().parent / "pull_once.py"
    done = subprocess.run(
        [sys.executable, str(script), str(path), name], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        msg = f"the pull of {name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
        raise RuntimeError(msg)
    f = json.loads(done.stdout.strip().splitlines()[-1])
    PSS[str(tmp)] = f["peak_pss"]
    return f["created"], f["seconds"], f["cpu"], f["peak"], f["peak"] - f["rss_before"]


# -- Jira ----------------------------------------------------------------------------------


UPSERT_INCIDENT = (
    "INSERT INTO incident (source, external_id, key, title, priority, status, category,"
    " contact_name, contact_email, contact_phone, created_at, updated_at, source_sla, raw,"
    " fingerprint, ingested_at, changed_at, revision, planned_revision)"
    " VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)"
    " ON CONFLICT (source, external_id) DO UPDATE SET title = excluded.title,"
    " priority = excluded.priority, status = excluded.status, updated_at = excluded.updated_at,"
    " source_sla = excluded.source_sla, raw = excluded.raw, changed_at = excluded.changed_at,"
    " revision = incident.revision + 1"
    " RETURNING id"
)
UPSERT_STATUS = (
    "INSERT INTO status_event (incident_id, seq, at, status, category, observed)"
    " VALUES (?, ?, ?, ?, 'new', 0)"
    " ON CONFLICT (incident_id, seq) DO UPDATE SET at = excluded.at, status = excluded.status"
)


def jira_bare(url: str, first: dict[str, Any], db: Path) -> Figures:
    """The practical limit: page the same search (pages only), orjson, upsert, one
    transaction per page."""
    _, raw_body = first["POST /rest/api/3/search/jql"]
    body = orjson.loads(raw_body)
    body.pop("nextPageToken", None)
    conn = store(db)
    auth = ("ops@example.com", "api-token-123")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    n = 0
    with Peak() as peak, httpx.Client(base_url=url, auth=auth, headers=headers) as client:
        t0, c0 = time.perf_counter(), time.process_time()
        sla_ids = [  # JSM's SLA fields, found once, as qloop does
            f["id"]
            for f in orjson.loads(client.get("/rest/api/3/field").content)
            if (f.get("schema") or {}).get("custom") == "com.atlassian.servicedesk:sd-sla-field"
        ]
        while True:
            page = client.post("/rest/api/3/search/jql", content=orjson.dumps(body))
            page.raise_for_status()
            data = orjson.loads(page.content)
            issues = data.get("issues") or []
            with conn:
                for issue in issues:
                    f = issue["fields"]
                    person = f.get("reporter") or {}
                    sla = {k: f.pop(k, None) for k in sla_ids}
                    iid = conn.execute(
                        UPSERT_INCIDENT,
                        (
                            "jira", issue["id"], issue["key"], f.get("summary") or "",
                            (f.get("priority") or {}).get("name", ""),
                            (f.get("status") or {}).get("name", ""),
                            person.get("displayName"), person.get("emailAddress"),
                            f.get("customfield_10042"), f.get("created"), f.get("updated"),
                            orjson.dumps(sla), orjson.dumps(issue), issue["id"], NOW, NOW,
                        ),
                    ).fetchone()[0]  # fmt: skip
                    histories = (issue.get("changelog") or {}).get("histories") or []
                    conn.executemany(
                        UPSERT_STATUS,
                        [
                            (iid, seq, at, status)
                            for seq, (at, status) in enumerate(
                                (h["created"], item["toString"])
                                for h in histories
                                for item in h["items"]
                                if item.get("field") == "status"
                            )
                        ],
                    )
            n += len(issues)
            token = data.get("nextPageToken")
            if not issues or not token or data.get("isLast"):
                break
            body["nextPageToken"] = token
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return n, seconds, cpu, peak.peak, peak.peak - peak.base


def warm_jira(server: ChildServer, tmp: Path, source: dict[str, Any]) -> tuple[list[str], str]:
    """Have the fake render every issue as qloop's search will ask for it (not timed), so
    neither side pays for the fake's first rendering. Returns the (fields, expand) warmed."""
    tmp.mkdir()
    path = sandbox_config(f"sqlite:///{tmp / 'warm.db'}", tmp, extra={"sources": {"jira": source}})
    rt = open_runtime(load_config(path))
    try:
        puller = rt.source("jira").puller  # type: ignore[attr-defined]
        shape = puller.search_fields(puller.sla_fields()), puller.expand or ""
    finally:
        rt.close()
    server.ask("warm", shape)
    server.ask("counts")  # the warm-up's requests are not counted
    return shape


def check_warmed(first: dict[str, Any], shape: tuple[list[str], str]) -> None:
    """The search qloop sent asked for the shape that was warmed (else the figures lie)."""
    body = orjson.loads(first["POST /rest/api/3/search/jql"][1])
    sent = (body.get("fields") or [], body.get("expand") or "")
    if sent != shape:
        msg = f"the fake was warmed for {shape}, but qloop asked for {sent}"
        raise SystemExit(msg)


def bench_jira(n: int, tmp: Path, latency_ms: float, child: bool) -> dict[str, Any]:
    # issues created over the 20 days from ``start``, updated up to a few days later
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    out: dict[str, Any] = {}
    # N/5 first, on a fresh heap: its peak against N's shows whether memory grows with N
    small = max(n // 5, 100)
    server = ChildServer("jira", small, start)
    try:
        opts = {
            "type": "jira_sm",
            **source_options(server.url, page_size=100),
            "pull_process": child,
        }
        warm_jira(server, tmp / "small-warm", opts)
        (tmp / "small").mkdir()
        out["small"] = run_qloop(tmp / "small", "jira", opts)
        out["small_n"] = small
    finally:
        server.close()
    server = ChildServer("jira", n, start)
    try:
        opts = {
            "type": "jira_sm",
            **source_options(server.url, page_size=100),
            "pull_process": child,
        }
        shape = warm_jira(server, tmp / "warm", opts)
        out["qloop"] = run_qloop(tmp, "jira", opts)
        out["qloop_requests"] = server.ask("counts")
        first = server.ask("first")
        check_warmed(first, shape)
        out["bare"] = jira_bare(server.url, first, tmp / "jira-bare.db")
        out["bare_requests"] = server.ask("counts")
        if latency_ms:
            server.ask("latency_ms", latency_ms)
            (tmp / "s").mkdir()
            out["single"] = run_qloop(tmp / "s", "jira", opts)
            backfill = {
                **opts,
                "backfill_from": (start - timedelta(days=1)).isoformat(),
                "backfill_parts": 8,
                "backfill_workers": 8,
            }
            (tmp / "p").mkdir()
            out["partitioned"] = run_qloop(tmp / "p", "jira", backfill)
            out["bare_single"] = jira_bare(server.url, first, tmp / "jira-bare-latency.db")
            out["ceiling"] = 100 / (latency_ms / 1000)
    finally:
        server.close()
    return out


# -- GLPI ----------------------------------------------------------------------------------


def glpi_bare(url: str, first: dict[str, Any], db: Path) -> Figures:
    """Range-page the fake GLPI's ticket search qloop sent; read each ticket's parts; insert."""
    query, _ = first["GET /apirest.php/search/Ticket"]
    base = [(k, v) for k, v in httpx.QueryParams(query).multi_items() if k != "range"]
    conn = store(db)
    headers = {"App-Token": APP_TOKEN, "Authorization": f"user_token {USER_TOKEN}"}
    users: dict[int, Any] = {}
    n = 0
    with Peak() as peak, httpx.Client(base_url=f"{url}/apirest.php", headers=headers) as client:
        t0, c0 = time.perf_counter(), time.process_time()
        session = client.get("/initSession").json()["session_token"]
        client.headers["Session-Token"] = session
        size, start = 200, 0
        while True:
            page = client.get(
                "/search/Ticket",
                params=[*base, ("range", f"{start}-{start + size - 1}")],
            )
            if page.status_code == 400:
                break  # ERROR_RANGE_EXCEED_TOTAL
            data = page.json().get("data") or []
            rows = []
            for row in data:
                tid = int(row["2"])
                actors = client.get(f"/Ticket/{tid}/Ticket_User").json()
                for actor in actors:
                    uid = int(actor.get("users_id") or 0)
                    if uid and uid not in users:
                        users[uid] = client.get(f"/User/{uid}").json()
                        client.get(f"/User/{uid}/UserEmail")
                client.get(f"/Ticket/{tid}/ITILSolution")
                log = client.get(f"/Ticket/{tid}/Log").json()
                events = [
                    (e["date_mod"], e["new_value"])
                    for e in log
                    if str(e.get("id_search_option")) == "12"
                ]
                inc = {
                    "id": str(tid), "key": str(tid), "title": row.get("1"),
                    "priority": str(row.get("3")), "status": str(row.get("12")),
                    "created": row.get("15"), "updated": row.get("19"), "raw": row,
                }  # fmt: skip
                rows.append((inc, events))
            insert(conn, "glpi", rows)
            n += len(rows)
            if page.status_code == 200 or not data:
                break
            start += size
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return n, seconds, cpu, peak.peak, peak.peak - peak.base


def bench_glpi(n: int, tmp: Path) -> dict[str, Any]:
    server = ChildServer("glpi", n, FakeGlpi().now - timedelta(days=30))
    out: dict[str, Any] = {}
    try:
        opts = {
            "type": "glpi", "base_url": f"{server.url}/apirest.php", "app_token": APP_TOKEN,
            "user_token": USER_TOKEN, "server_timezone": "Europe/Paris", "page_size": 200,
        }  # fmt: skip
        out["qloop"] = run_qloop(tmp, "glpi", opts)
        out["qloop_requests"] = server.ask("counts")
        out["bare"] = glpi_bare(server.url, server.ask("first"), tmp / "glpi-bare.db")
        out["bare_requests"] = server.ask("counts")
    finally:
        server.close()
    return out


def line(label: str, figures: Figures | None, extra: str = "") -> None:
    if figures is None:
        return
    count, seconds, cpu, peak, grew = figures
    rate = count / seconds if seconds else 0.0
    print(
        f"  {label:<30} {count:>6} in {seconds:7.2f} s ({cpu:6.2f} s CPU) {rate:7.0f}/s"
        f"  peak {peak:4.0f} MB (+{grew:3.0f}) {extra}"
    )


def rate(figures: Figures) -> float:
    return figures[0] / figures[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jira", type=int, default=50_000, help="Jira issues (default 50000)")
    parser.add_argument("--glpi", type=int, default=5_000, help="GLPI tickets (default 5000)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="Jira pulls without pull_process (fetch and convert in the storing process)",
    )
    args = parser.parse_args(argv)
    ratio = 0.0
    with tempfile.TemporaryDirectory(prefix="qloop-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        if args.jira:
            (tmp / "jira").mkdir()
            j = bench_jira(args.jira, tmp / "jira", args.latency_ms, not args.one_process)
            mode = (
                "one process"
                if args.one_process
                else "pull_process: CPU of both processes, peak of their summed RSS"
            )
            print(f"Jira, {args.jira} issues (pages of 100; qloop {mode})")
            line("qloop pull, 0 ms", j["qloop"], f"({j['qloop_requests']} requests)")
            line("bare loop, 0 ms", j["bare"], f"({j['bare_requests']} requests)")
            ratio = rate(j["qloop"]) / rate(j["bare"])
            cpu = (j["qloop"][2] / j["qloop"][0]) / (j["bare"][2] / j["bare"][0])
            print(f"  qloop/bare at 0 ms: {ratio:.2f} (aim >= 0.9); CPU per issue x{cpu:.1f}")
            if args.latency_ms:
                ceiling = j["ceiling"]
                lat = f"{args.latency_ms:g} ms"
                line(f"qloop single, {lat}", j["single"])
                line(f"qloop partitioned 8x8, {lat}", j["partitioned"])
                line(f"bare loop, {lat}", j["bare_single"])
                print(f"  ceiling of one token stream    {ceiling:8.0f}/s (page 100 / {lat})")
                print(
                    f"  single/ceiling {rate(j['single']) / ceiling:.2f} (aim >= 0.95); "
                    f"partitioned/ceiling {rate(j['partitioned']) / ceiling:.2f} (aim >= 2); "
                    f"bare loop/ceiling {rate(j['bare_single']) / ceiling:.2f}"
                )
                cpu_page = 100 * j["qloop"][2] / j["qloop"][0] * 1000
                print(
                    f"  qloop's CPU per page of 100 at 0 ms: {cpu_page:.0f} ms "
                    f"(the ceiling needs under {args.latency_ms:g} ms)"
                )
            line("qloop pull, N/5, 0 ms", j["small"])
            print(
                f"  peak RSS {j['qloop'][3]:.0f} MB at {args.jira}, {j['small'][3]:.0f} MB at "
                f"{j['small_n']} (aim <= 100 MB, flat in N); summed PSS "
                f"{PSS[str(tmp / 'jira')]:.0f} MB at {args.jira}, "
                f"{PSS[str(tmp / 'jira' / 'small')]:.0f} MB at {j['small_n']}"
            )
        if args.glpi:
            (tmp / "glpi").mkdir()
            g = bench_glpi(args.glpi, tmp / "glpi")
            print(f"GLPI, {args.glpi} tickets")
            line("qloop pull, 0 ms", g["qloop"], f"({g['qloop_requests']} requests)")
            line("bare httpx loop, 0 ms", g["bare"], f"({g['bare_requests']} requests)")
            g_ratio = rate(g["qloop"]) / rate(g["bare"])
            print(f"  GLPI ratio {g_ratio:.2f}")
            if not args.jira:
                ratio = g_ratio
    print(f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
