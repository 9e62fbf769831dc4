"""Benchmark: signed webhook intake on PostgreSQL, against a bare Starlette baseline.

    python bench/webhooks.py [--count 6000] [--seconds 60] [--concurrency 64] [--workers 2]

Needs a PostgreSQL server (``QLOOP_BENCH_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/postgres``); it creates and drops
its own database ``qloop_bench_webhooks_<pid>``. For each server:

* ``qloop``: the demo config plus a ``webhook`` channel ``ivr`` (Standard
  Webhooks signatures), served by uvicorn with ``--workers`` processes;
  deliveries go to ``POST /webhooks/ivr``.
* ``baseline``: a bare Starlette endpoint, same uvicorn workers, that checks
  the same signature (:func:`connectors.webhook.signing.verify`) and inserts
  the same ``response`` row with one plain SQL statement (``ON CONFLICT DO
  NOTHING``) on a psycopg connection per worker.

The load generator (a minimal asyncio HTTP/1.1 client on 127.0.0.1, the
deliveries signed before the clock starts, so that it costs the shared
CPUs less than the servers it loads) sends ``--count`` unique signed
survey answers, at most ``--concurrency`` at once and for at most
``--seconds``; every tenth is sent a second time, as a provider retrying.
At the end the ``response`` table must hold each acknowledged delivery once:
``lost`` (a 2xx whose row is missing) and ``duplicated`` (an event stored
twice) must be 0. The last line is ``webhooks_per_s=…`` (unique deliveries
acknowledged per second), the p99 latency and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.webhook.signing import decode_secret, signed_headers, verify

SECRET = "whsec_" + "YmVuY2gtd2ViaG9va3MtYmVuY2gtc2VjcmV0LTAx"
DB = os.environ.setdefault("QLOOP_BENCH_WEBHOOKS_DB", f"qloop_bench_webhooks_{os.getpid()}")
"""This run's database (the servers it starts inherit the name)."""
CHANNEL = "ivr"
ADMIN_URL = os.environ.get("QLOOP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(driver: str = "postgresql") -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{DB}".replace("postgresql://", f"{driver}://", 1)


def reset_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def drop_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def write_config(workdir: Path) -> Path:
    """The demo config on the bench database, with a signed ``webhook`` channel."""
    doc = yaml.safe_load((ROOT / "config" / "sandbox.yaml").read_text(encoding="utf-8"))
    doc["database_url"] = db_url("postgresql+psycopg")
    doc["state_dir"] = str(workdir / "state")
    doc["channels"][CHANNEL] = {
        "type": "webhook",
        "url": "http://127.0.0.1:9/tasks",
        "signing_secret": SECRET,
        "kinds": ["survey"],
    }
    path = workdir / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def migrate(config: Path) -> None:
    """Create the schema once, before the workers start (each would otherwise race to)."""
    import connectors  # noqa: F401
    from core.conf import load_config
    from core.runtime import open_runtime

    open_runtime(load_config(config)).close()


# The servers ---------------------------------------------------------------------------


def qloop_app() -> Any:
    """uvicorn factory: qloop's API for ``QLOOP_CONFIG``."""
    from api.app import create_app

    return create_app(Path(os.environ["QLOOP_CONFIG"]))


_INSERT = (
    "INSERT INTO response (channel, provider_event_id, kind, occurred_at, received_at, "
    "correlation_token, score_raw, scale_min, scale_max, score, confirmed, raw, matched) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, 1, 5, %s, %s, %s, false) "
    "ON CONFLICT (channel, provider_event_id) DO NOTHING"
)


def baseline_app() -> Any:
    """uvicorn factory: verify the signature, insert the row with plain SQL, 200 after commit."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from core.errors import InputError

    keys = [decode_secret(SECRET, "secret")]
    pool: list[psycopg.Connection[Any]] = []

    def store(headers: dict[str, str], body: bytes) -> int:
        verified = verify(headers, body, keys, datetime.now(UTC), 300)
        doc = json.loads(body)
        data = doc["data"]
        occurred = datetime.fromisoformat(data["occurred_at"])
        conn = pool.pop() if pool else psycopg.connect(db_url())
        try:
            with conn.transaction():
                conn.execute(
                    _INSERT,
                    (
                        CHANNEL,
                        verified.webhook_id,
                        data["kind"],
                        occurred,
                        datetime.now(UTC),
                        data.get("correlation_token"),
                        data["score"],
                        (data["score"] - 1) / 4,
                        data.get("confirmed"),
                        json.dumps(doc),
                    ),
                )
        finally:
            pool.append(conn)
        return 200

    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            status = await run_in_threadpool(store, headers, body)
        except InputError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401)
        return JSONResponse({"ok": True}, status_code=status)

    return Starlette(routes=[Route(f"/webhooks/{CHANNEL}", receive, methods=["POST"])])


def start_server(factory: str, port: int, workers: int, config: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", f"webhooks:{factory}",
        "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    env = {**os.environ, "QLOOP_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/webhooks/{CHANNEL}", content=b"{}", timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.3)
    stop_server(proc)
    msg = f"{factory}: the server did not answer on port {port} within 60 s"
    raise SystemExit(msg)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# The load ------------------------------------------------------------------------------


def delivery(tag: str, n: int) -> tuple[str, bytes, dict[str, str]]:
    at = datetime.now(UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "type": "outcome.reported",
        "timestamp": stamp,
        "data": {
            "kind": "survey_answer",
            "occurred_at": stamp,
            "correlation_token": f"tok-{n}",
            "score": 1 + n % 5,
            "confirmed": True,
        },
    }
    body = json.dumps(doc).encode()
    wid = f"msg_{tag}_{n}"
    headers = signed_headers([decode_secret(SECRET, "secret")], wid, at, body)
    return wid, body, {**headers, "content-type": "application/json"}


def request_bytes(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 keep-alive POST of ``body`` to the webhook path, ready to write."""
    lines = [f"POST /webhooks/{CHANNEL} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request on the connection and read its whole response; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def load(
    port: int, tag: str, count: int, seconds: float, concurrency: int
) -> tuple[float, list[float], set[str], int]:
    """Send the deliveries; (elapsed, latencies, ids acknowledged, failures).

    The load generator must cost less than the server it loads (both share
    the machine's CPUs): the deliveries are signed before the clock starts
    (signing is the provider's work) and sent as prepared bytes over
    ``concurrency`` keep-alive connections by a minimal HTTP/1.1 client.
    """
    acked: set[str] = set()
    latencies: list[float] = []
    failures = 0
    prepared: list[tuple[str, bytes, int]] = []
    for n in range(count):
        wid, body, headers = delivery(tag, n)
        sends = 2 if n % 10 == 0 else 1  # every tenth delivery is retried by the provider
        prepared.append((wid, request_bytes(port, body, headers), sends))
    prepared.reverse()  # pop() takes them in order
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while prepared and time.perf_counter() < deadline:
                wid, request, sends = prepared.pop()
                for _ in range(sends):
                    t0 = time.perf_counter()
                    try:
                        status = await asyncio.wait_for(exchange(reader, writer, request), 60)
                    except (OSError, asyncio.IncompleteReadError, TimeoutError):
                        failures += 1
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        continue
                    latencies.append(time.perf_counter() - t0)
                    if 200 <= status < 300:
                        acked.add(wid)
                    else:
                        failures += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, acked, failures


def check_store(tag: str, acked: set[str]) -> tuple[int, int]:
    """(lost, duplicated): acknowledged deliveries missing from the store, events stored twice."""
    with psycopg.connect(db_url()) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, count(*) FROM response "
            "WHERE channel = %s AND provider_event_id LIKE %s GROUP BY provider_event_id",
            (CHANNEL, f"msg\\_{tag}\\_%"),
        ).fetchall()
    stored = {wid: n for wid, n in rows}
    lost = sum(1 for wid in acked if wid not in stored)
    duplicated = sum(n - 1 for n in stored.values() if n > 1)
    return lost, duplicated


STATS_SETTLE_S = 11.0
"""An idle backend reports its statistics within 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL)."""


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def commits() -> int:
    """Transactions committed in the bench database so far (PostgreSQL's statistics)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DB,)
        ).fetchone()
    return int(row[0]) if row else 0


def run(
    name: str, factory: str, args: argparse.Namespace, config: Path, port: int
) -> tuple[float, float]:
    proc = start_server(factory, port, args.workers, config)
    try:
        asyncio.run(load(port, f"warm{name}", min(200, args.count), 30, args.concurrency))
        time.sleep(STATS_SETTLE_S)  # the warm-up's statistics reach pg_stat_database
        server0, client0, commits0 = group_cpu(proc.pid), time.process_time(), commits()
        elapsed, lat, acked, failures = asyncio.run(
            load(port, name, args.count, args.seconds, args.concurrency)
        )
        server_cpu, client_cpu = group_cpu(proc.pid) - server0, time.process_time() - client0
        time.sleep(STATS_SETTLE_S)
        made = commits() - commits0
    finally:
        stop_server(proc)
    lost, duplicated = check_store(name, acked)
    rate = len(acked) / elapsed
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = statistics.quantiles(lat, n=100)[98] if len(lat) >= 100 else float("nan")
    sent = len(lat)
    print(
        f"  {name:<9} {len(acked):>6} unique acknowledged in {elapsed:6.1f} s: {rate:7.0f}/s  "
        f"p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  failures {failures}  "
        f"lost {lost}  duplicated {duplicated}"
    )
    per = max(sent, 1)
    print(
        f"  {'':<9} server CPU {server_cpu:6.1f} s ({server_cpu / per * 1000:.2f} ms a request, "
        f"{per / server_cpu if server_cpu else float('inf'):.0f} requests/CPU-s), load generator "
        f"CPU {client_cpu:6.1f} s; {made} commits in the database for {sent} requests"
    )
    if lost or duplicated:
        msg = f"{name}: {lost} lost and {duplicated} duplicated deliveries"
        raise SystemExit(msg)
    return rate, p99


def profile(config: Path, count: int) -> None:
    """Send ``count`` deliveries through qloop's ASGI app in this process under cProfile.

    No socket and no uvicorn: what is left is the request path (middleware,
    routing, auth, signature, JSON, the store); the top functions by own and
    by cumulative time are printed. cProfile sees one thread only, so the
    thread-pool hops run inline here (their cost in threads is not counted).
    """
    import cProfile
    import pstats

    import anyio.to_thread

    from api.app import create_app

    async def inline(func: Any, *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]

    app = create_app(config)
    prepared = [delivery("prof", n) for n in range(count)]

    async def one(body: bytes, headers: dict[str, str]) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": f"/webhooks/{CHANNEL}",
            "raw_path": f"/webhooks/{CHANNEL}".encode(), "root_path": "", "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode()), (b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    async def all_of_them() -> list[int]:
        async with app.router.lifespan_context(app):
            return [await one(body, headers) for _, body, headers in prepared]

    prof = cProfile.Profile()
    started, cpu = time.perf_counter(), time.process_time()
    prof.enable()
    statuses = asyncio.run(all_of_them())
    prof.disable()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    bad = [s for s in statuses if not 200 <= s < 300]
    print(
        f"profile: {count} deliveries in-process, {wall:.2f} s wall, {cpu:.2f} s CPU: "
        f"{count / cpu:.0f}/CPU-s, {len(bad)} not 2xx"
    )
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=6000, help="unique deliveries per server")
    parser.add_argument("--seconds", type=float, default=60.0, help="cap on each load run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile N deliveries in-process instead"
    )
    args = parser.parse_args()
    reset_database()
    try:
        with tempfile.TemporaryDirectory(prefix="qloop-bench-wh-") as tmp:
            config = write_config(Path(tmp))
            migrate(config)
            if args.profile:
                profile(config, args.profile)
                return 0
            print(
                f"{args.count} signed deliveries (+10% resent), concurrency {args.concurrency}, "
                f"{args.workers} uvicorn workers, PostgreSQL, {os.cpu_count()} CPUs"
            )
            base_rate, _ = run("baseline", "baseline_app", args, config, args.port)
            rate, p99 = run("qloop", "qloop_app", args, config, args.port + 1)
    finally:
        drop_database()
    print(
        f"webhooks_per_s={rate:.0f} p99_ms={p99 * 1000:.0f} "
        f"ratio_to_baseline={rate / base_rate:.2f} lost=0 duplicated=0"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
