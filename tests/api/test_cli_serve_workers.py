"""``qloop serve --workers N``: the schema is migrated once, then N processes serve the API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.cli import build_parser
from tests.utils.loop import sandbox_config

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(c) for c in text)
    return found


def test_workers_is_parsed_and_bounded() -> None:
    args = build_parser().parse_args(["serve", "-c", "x.yaml", "--workers", "3"])
    assert args.workers == 3
    assert build_parser().parse_args(["serve", "-c", "x.yaml"]).workers == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "-c", "x.yaml", "--workers", "0"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_two_workers_serve_the_api(tmp_path: Path) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    port = _free_port()
    cmd = [sys.executable, "-m", "api.cli", "serve", "-c", str(path), "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200, log.read_text()
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            workers = _children(proc.pid) - _trackers(proc.pid)
            time.sleep(0.2)
        assert len(workers) == 2, log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _trackers(pid: int) -> set[int]:
    """Helper processes multiprocessing may start beside the workers (resource tracker)."""
    return {c for c in _children(pid) if "resource_tracker" in _cmdline(c)}
