"""A test run leaves nothing behind in the shared PostgreSQL server and Redis.

A small inner pytest run writes tables, RQ-style keys and prefixed keys the
way the suite does; once it has ended, its database is gone and its Redis
database is empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import POSTGRES_URL, ROOT, _missing

INNER = """
from redis import Redis
from sqlalchemy import create_engine, text


def test_writes_like_the_suite(postgres_url: str, redis_url: str) -> None:
    conn = Redis.from_url(redis_url)
    conn.sadd("rq:queues", "rq:queue:default")  # RQ's fixed names carry no prefix
    conn.set("rq:job:0123", "x")
    conn.set("qloop:budget:example.org", "1")
    engine = create_engine(postgres_url)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE leftover (x integer)"))
    engine.dispose()
"""


def test_a_run_removes_its_database_and_its_redis_keys(tmp_path: Path) -> None:
    if not POSTGRES_URL:
        _missing("PostgreSQL (QLOOP_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    (tmp_path / "test_inner.py").write_text(INNER, encoding="utf-8")
    report = tmp_path / "services.txt"
    env = {**os.environ, "QLOOP_TEST_SERVICES_REPORT": str(report), "QLOOP_REQUIRE_SERVICES": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    used = dict(line.split("=", 1) for line in report.read_text().splitlines())
    database, redis_url = used["postgres_database"], used["redis_database"]
    assert database.startswith("qloop_test_") and database != make_url(POSTGRES_URL).database
    admin = create_engine(make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
    try:
        with admin.connect() as db:
            left = db.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": database}
            ).scalar_one()
    finally:
        admin.dispose()
    assert left == 0
    conn = Redis.from_url(redis_url)
    try:
        assert conn.dbsize() == 0, sorted(conn.scan_iter())
    finally:
        conn.close()
