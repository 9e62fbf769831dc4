"""Shared fixtures: a database URL per backend (SQLite always, PostgreSQL when configured), Redis.

``QLOOP_TEST_POSTGRES_URL`` enables the PostgreSQL runs; each test gets its
own schema, dropped afterwards. ``redis_url`` gives a Redis database and a
queue prefix of the test's own. ``QLOOP_REQUIRE_SERVICES=1`` (set by
``.ci/run``) makes a missing PostgreSQL or Redis a failure instead of a skip.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get("QLOOP_TEST_POSTGRES_URL")
REQUIRE_SERVICES = os.environ.get("QLOOP_REQUIRE_SERVICES") == "1"


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (QLOOP_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not configured")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not POSTGRES_URL:
        _missing("PostgreSQL (QLOOP_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    base = make_url(POSTGRES_URL)
    if base.drivername in ("postgresql", "postgres"):
        base = base.set(drivername="postgresql+psycopg")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server is down or refuses us
        admin.dispose()
        _missing(f"PostgreSQL at {base.render_as_string()} ({type(exc).__name__})")
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
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


def _with_db(url: str) -> str:
    """``url`` itself when it names a database number, else a random one of 1–15."""
    parts = urlsplit(url)
    if parts.path.strip("/").isdigit():
        return url
    return urlunsplit(parts._replace(path=f"/{random.randint(1, 15)}"))


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Redis URL and a fresh ``QLOOP_QUEUE_PREFIX``; the test's keys are removed after."""
    url = _with_db(REDIS_URL)
    conn = Redis.from_url(url)
    try:
        conn.ping()
    except RedisError as exc:
        conn.close()
        what = f"Redis at {url} ({type(exc).__name__})"
        if REQUIRE_SERVICES:
            pytest.fail(f"{what} is required (QLOOP_REQUIRE_SERVICES=1) but not available")
        pytest.skip(f"{what} not available")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("QLOOP_QUEUE_PREFIX", prefix)
    before = set(conn.scan_iter(count=1000))
    try:
        yield url
    finally:
        # only keys naming our prefix: another test run may share this database right now
        made = [k for k in conn.scan_iter(count=1000) if k not in before and prefix.encode() in k]
        if made:
            conn.delete(*made)
        for key in before:  # shared sets (rq:queues, rq:workers…) may list our queues
            if conn.type(key) == b"set":
                ours = [m for m in conn.smembers(key) if prefix.encode() in m]
                if ours:
                    conn.srem(key, *ours)
        conn.close()


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
