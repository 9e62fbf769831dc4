"""Ingest benchmark: qloop's pull from the local fake Jira and GLPI, beside a bare loop.

Each fake ITSM runs in a child process (its memory and CPU are not counted).
For each it runs a first sync of N incidents through the real
``pull`` step (connector + mapping + store, SQLite) and, against the same
server, a *bare loop*: plain httpx that replays the requests qloop made
(the same search query, the same per-ticket calls) and inserts the same
incident and status rows with sqlite3 ``executemany``. Then the same at a
page latency (default 20 ms): single stream, and partitioned windows, beside
the ceiling of one token stream (page size / latency).

    python bench/ingest.py                 # 50k Jira, 5k GLPI (GLPI costs 4 calls a ticket)
    python bench/ingest.py --jira 2000 --glpi 500 --latency-ms 20

Its last line is ``ratio=R``: qloop / bare loop at 0 ms (Jira, the paging
case), aim 0.9 or better.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sqlite3
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

import connectors  # noqa: F401  registers the connector types
from core.conf import load_config
from core.loop import pull
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
        self.peak = rss_mb()
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


def _serve_child(kind: str, n: int, start: datetime, conn: Any) -> None:
    fake: Any
    if kind == "jira":
        fake = FakeJira(issues=n, profile_zone="Asia/Shanghai", start=start)
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
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def insert(conn: sqlite3.Connection, source: str, rows: list[tuple[dict[str, Any], list]]) -> None:
    """Insert incidents and their status events, one transaction per page."""
    with conn:
        ids = []
        for inc, _ in rows:
            cur = conn.execute(
                "INSERT INTO incident (source, external_id, key, title, priority, status, category,"
                " created_at, updated_at, source_sla, raw, fingerprint, ingested_at, changed_at,"
                " revision, planned_revision, evaluated_revision)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?, 1, 0, 0)",
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


def run_qloop(tmp: Path, name: str, source: dict[str, Any]) -> tuple[int, float, float]:
    """First sync of ``source`` through qloop's pull; (incidents, seconds, peak MB)."""
    path = sandbox_config(f"sqlite:///{tmp / f'{name}.db'}", tmp, extra={"sources": {name: source}})
    rt = open_runtime(load_config(path))
    try:
        with Peak() as peak:
            t0 = time.perf_counter()
            result = pull(rt, name)
            seconds = time.perf_counter() - t0
        return result.counts["created"], seconds, peak.peak
    finally:
        rt.close()


# -- Jira ----------------------------------------------------------------------------------


def jira_bare(url: str, first: dict[str, Any], db: Path) -> tuple[int, float, float]:
    """Page the fake Jira with the search qloop sent; fetch changelogs where truncated; insert."""
    _, raw_body = first["POST /rest/api/3/search/jql"]
    body = json.loads(raw_body)
    body.pop("nextPageToken", None)
    conn = store(db)
    auth = ("ops@example.com", "api-token-123")
    n = 0
    with Peak() as peak, httpx.Client(base_url=url, auth=auth) as client:
        t0 = time.perf_counter()
        token = None
        while True:
            page = client.post("/rest/api/3/search/jql", json={**body, "nextPageToken": token})
            data = page.raise_for_status().json()
            rows = []
            for issue in data.get("issues", []):
                log = issue.get("changelog") or {}
                histories = list(log.get("histories") or [])
                if log.get("total", 0) > len(histories):
                    start, histories = 0, []
                    while True:
                        more = client.get(
                            f"/rest/api/3/issue/{issue['key']}/changelog",
                            params={"startAt": start, "maxResults": 100},
                        ).json()
                        histories += more["values"]
                        start += len(more["values"])
                        if more.get("isLast", True) or not more["values"]:
                            break
                # the same per-issue call qloop makes: JSM SLA cycles
                client.get(f"/rest/servicedeskapi/request/{issue['key']}/sla")
                f = issue["fields"]
                events = [
                    (h["created"], item["toString"])
                    for h in histories
                    for item in h["items"]
                    if item.get("field") == "status"
                ]
                inc = {
                    "id": issue["id"], "key": issue["key"], "title": f.get("summary"),
                    "priority": (f.get("priority") or {}).get("name", ""),
                    "status": (f.get("status") or {}).get("name", ""),
                    "created": f.get("created"), "updated": f.get("updated"), "raw": issue,
                }  # fmt: skip
                rows.append((inc, events))
            insert(conn, "jira", rows)
            n += len(rows)
            token = data.get("nextPageToken")
            if not token or data.get("isLast"):
                break
        seconds = time.perf_counter() - t0
    conn.close()
    return n, seconds, peak.peak


def bench_jira(n: int, tmp: Path, latency_ms: float) -> dict[str, Any]:
    # issues created over the 20 days from ``start``, updated up to a few days later
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    server = ChildServer("jira", n, start)
    out: dict[str, Any] = {}
    try:
        opts = {"type": "jira_sm", **source_options(server.url, page_size=100)}
        out["qloop"] = run_qloop(tmp, "jira", opts)
        out["qloop_requests"] = server.ask("counts")
        out["bare"] = jira_bare(server.url, server.ask("first"), tmp / "jira-bare.db")
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
            out["ceiling"] = 100 / (latency_ms / 1000)
    finally:
        server.close()
    return out


# -- GLPI ----------------------------------------------------------------------------------


def glpi_bare(url: str, first: dict[str, Any], db: Path) -> tuple[int, float, float]:
    """Range-page the fake GLPI's ticket search qloop sent; read each ticket's parts; insert."""
    query, _ = first["GET /apirest.php/search/Ticket"]
    base = [(k, v) for k, v in httpx.QueryParams(query).multi_items() if k != "range"]
    conn = store(db)
    headers = {"App-Token": APP_TOKEN, "Authorization": f"user_token {USER_TOKEN}"}
    users: dict[int, Any] = {}
    n = 0
    with Peak() as peak, httpx.Client(base_url=f"{url}/apirest.php", headers=headers) as client:
        t0 = time.perf_counter()
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
        seconds = time.perf_counter() - t0
    conn.close()
    return n, seconds, peak.peak


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


def line(label: str, figures: tuple[int, float, float] | None, extra: str = "") -> None:
    if figures is None:
        return
    count, seconds, peak = figures
    rate = count / seconds if seconds else 0.0
    print(
        f"  {label:<28} {count:>7} in {seconds:7.2f} s  {rate:8.0f}/s  peak {peak:6.0f} MB {extra}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jira", type=int, default=50_000, help="Jira issues (default 50000)")
    parser.add_argument("--glpi", type=int, default=5_000, help="GLPI tickets (default 5000)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    ratio = 0.0
    with tempfile.TemporaryDirectory(prefix="qloop-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        if args.jira:
            (tmp / "jira").mkdir()
            j = bench_jira(args.jira, tmp / "jira", args.latency_ms)
            print(f"Jira, {args.jira} issues")
            line("qloop pull, 0 ms", j["qloop"], f"({j['qloop_requests']} requests)")
            line("bare httpx loop, 0 ms", j["bare"], f"({j['bare_requests']} requests)")
            q_rate = j["qloop"][0] / j["qloop"][1]
            b_rate = j["bare"][0] / j["bare"][1]
            ratio = q_rate / b_rate
            if args.latency_ms:
                line(f"qloop single, {args.latency_ms:g} ms", j.get("single"))
                line(f"qloop partitioned, {args.latency_ms:g} ms", j.get("partitioned"))
                print(f"  ceiling of one token stream   {j['ceiling']:8.0f}/s (page 100 / latency)")
        if args.glpi:
            (tmp / "glpi").mkdir()
            g = bench_glpi(args.glpi, tmp / "glpi")
            print(f"GLPI, {args.glpi} tickets")
            line("qloop pull, 0 ms", g["qloop"], f"({g['qloop_requests']} requests)")
            line("bare httpx loop, 0 ms", g["bare"], f"({g['bare_requests']} requests)")
            g_ratio = (g["qloop"][0] / g["qloop"][1]) / (g["bare"][0] / g["bare"][1])
            print(f"  GLPI ratio {g_ratio:.2f}")
            if not args.jira:
                ratio = g_ratio
    print(f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
