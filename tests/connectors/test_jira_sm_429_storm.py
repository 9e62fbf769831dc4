"""A 1,000-issue Jira backfill under Jira's burst limiter and a 20 % 429 rate.

Jira's limiter blocks an endpoint for ``Retry-After`` after a 429 and
restarts the block at every early call. Fetch workers that each waited only
for their own 429 kept calling and kept the endpoint blocked: the pull
made no progress. Now one 429 pauses every caller of the host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

import connectors.jira_sm  # noqa: F401  (registers jira_sm before the config is validated)
from core.conf import load_config
from core.loop import pull
from core.runtime import open_runtime
from core.store.models import Incident
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.ratelimit import BurstLimiter
from tests.fakes.server import serve
from tests.utils.loop import FakeClock, sandbox_config

ISSUES = 1000
DEADLINE_S = 90.0


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(issues=ISSUES, profile_zone="America/New_York")
    with serve(fake.app) as url:
        fake.server_url = url
        yield fake, url


def test_a_backfill_in_concurrent_windows_finishes_under_a_20_percent_429_rate(
    database_url: str, tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    fake.latency_ms = 5
    fake.ratelimit = BurstLimiter(random_rate=0.2, retry_after=0.1, seed="storm")
    options = source_options(
        url,
        backfill_from=datetime(2026, 9, 30, tzinfo=UTC).isoformat(),
        backfill_parts=8,
        backfill_workers=4,
        fetch_workers=4,
        page_size=50,
        sla=False,
    )
    path = sandbox_config(
        database_url, tmp_path, extra={"sources": {"jira": {"type": "jira_sm", **options}}}
    )
    # real waits: Retry-After is honoured on the wall clock, as against the real Jira
    rt = open_runtime(load_config(path), clock=FakeClock(), sleep=time.sleep)
    try:
        started = time.monotonic()
        result = pull(rt, "jira")
        took = time.monotonic() - started
        with rt.db.session() as s:
            stored = s.scalar(
                select(func.count()).select_from(Incident).where(Incident.source == "jira")
            )
    finally:
        rt.close()
    limiter = fake.ratelimit
    assert result.errors == [] and stored == ISSUES, (result.errors, stored)
    assert took < DEADLINE_S
    assert limiter.refused > 50  # the storm was real: about one request in five refused
