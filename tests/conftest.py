"""Shared fixtures: a database URL per backend (SQLite always, PostgreSQL when configured), Redis.

``QLOOP_TEST_POSTGRES_URL`` enables the PostgreSQL runs: the run creates a
database of its own on that server, each test a schema in it, and both are
dropped afterwards. ``redis_url`` gives the Redis database this run claimed
(an empty one, emptied at the end) and a queue prefix of the test's own.
``QLOOP_REQUIRE_SERVICES=1`` (set by ``.ci/run``) makes a missing PostgreSQL
or Redis a failure instead of a skip.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get("QLOOP_TEST_POSTGRES_URL")
REQUIRE_SERVICES = os.environ.get("QLOOP_REQUIRE_SERVICES") == "1"


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (QLOOP_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not configured")


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[URL]:
    """This run's own PostgreSQL database on the server of ``QLOOP_TEST_POSTGRES_URL``.

    The URL's database is only where the run connects to create its own
    (``qloop_test_<random>``), which is dropped when the run ends: two runs on
    one server never see each other's tables, and none leaves any behind.
    """
    if not POSTGRES_URL:
        _missing("PostgreSQL (QLOOP_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    base = make_url(POSTGRES_URL)
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    name = f"qloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is down or refuses us
        admin.dispose()
        _missing(f"PostgreSQL at {base.render_as_string()} ({type(exc).__name__})")
    _report_service("postgres_database", name)
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(_postgres_database: URL) -> Iterator[str]:
    """A URL of this run's database whose search_path is a fresh schema, dropped after."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_postgres_database)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _postgres_database.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'qloop.db'}"
    return str(request.getfixturevalue("postgres_url"))


REDIS_URL = os.environ.get("QLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "qloop:test-run"
"""The key by which a test run claims a Redis database for itself."""


def _redis_candidates(url: str) -> list[str]:
    """The database named in ``url``, or databases 1–15 when it names none."""
    parts = urlsplit(url)
    if parts.path.strip("/").isdigit():
        return [url]
    return [urlunsplit(parts._replace(path=f"/{n}")) for n in range(1, 16)]


@pytest.fixture(scope="session")
def _redis_database() -> Iterator[str]:
    """A Redis database of this run's own: empty when claimed, emptied when the run ends.

    RQ writes fixed key names (``rq:queues``, ``rq:job:<id>``…) that no
    prefix can cover, so the run takes a whole database: the first of
    ``QLOOP_TEST_REDIS_URL``'s (or of 1–15 when the URL names none) that
    holds no key, claimed with ``SET NX`` against a concurrent run.
    """
    run = uuid.uuid4().hex
    for url in _redis_candidates(REDIS_URL):
        conn = Redis.from_url(url)
        try:
            if conn.dbsize() == 0 and conn.set(CLAIM_KEY, run, nx=True):
                break
        except RedisError as exc:
            conn.close()
            _missing(f"Redis at {url} ({type(exc).__name__})")
        conn.close()
    else:
        _missing(f"an empty Redis database at {REDIS_URL} (every candidate holds keys)")
    _report_service("redis_database", url)
    try:
        yield url
    finally:
        if conn.get(CLAIM_KEY) == run.encode():
            conn.flushdb()
        conn.close()


@pytest.fixture
def redis_url(_redis_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This run's Redis database and a fresh ``QLOOP_QUEUE_PREFIX``; the test's keys go after."""
    url = _redis_database
    conn = Redis.from_url(url)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("QLOOP_QUEUE_PREFIX", prefix)
    before = set(conn.scan_iter(count=1000))
    try:
        yield url
    finally:
        made = [
            k for k in conn.scan_iter(count=1000) if k not in before and k != CLAIM_KEY.encode()
        ]
        if made:
            conn.delete(*made)
        conn.close()


def _report_service(what: str, value: str) -> None:
    """Append ``what=value`` to ``QLOOP_TEST_SERVICES_REPORT`` (the isolation test reads it)."""
    path = os.environ.get("QLOOP_TEST_SERVICES_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{what}={value}\n")


@pytest.fixture(autouse=True)
def _fresh_host_budgets() -> Iterator[None]:
    """Each test starts as a fresh process: no host budget or 429 pause left by another."""
    from connectors.http import HostBudget

    HostBudget.forget()
    yield
    HostBudget.forget()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Loggers as before the test: a command under test installs stderr handlers
    (``core.logs.configure``) on streams that pytest closes after the test."""
    import logging

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = {lg: (list(lg.handlers), lg.level, lg.propagate) for lg in loggers}
    yield
    for lg, (handlers, level, propagate) in saved.items():
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Forget the test-only connector types after each test (other tests list the types)."""
    from core import registry

    saved = dict(registry._TYPES)
    yield
    registry._TYPES.clear()
    registry._TYPES.update(saved)
