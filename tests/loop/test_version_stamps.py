"""Version stamps on compliance records (issue 10 item 8; SPEC §10 "Evaluation instant").

Every record carries the instant it was evaluated as of, qloop's version and
the ``holidays`` package's version. A re-evaluation that changes a stored
verdict under other versions says why: an INFO line and a counter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from core.loop import run_once
from core.loop.evaluate import evaluate
from core.records import Category as C
from core.store.models import ComplianceRecord, Incident
from tests.utils.fixture_connectors import WORLD, incident, register_fixture_types
from tests.utils.loop import AFTER_MONTH, Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")


def L(day: int, hour: int) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=SH)


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    WORLD.reset()
    # P2 answered after 2 business hours (target 30 min): a response breach
    WORLD.incidents = [
        incident(
            "V-1",
            "P2",
            L(13, 9),
            [(L(13, 9), C.NEW), (L(13, 11), C.IN_PROGRESS), (L(13, 15), C.RESOLVED)],
        )
    ]
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()


def _record(rt: object) -> ComplianceRecord:
    with rt.db.session() as s:  # type: ignore[attr-defined]
        return s.scalars(select(ComplianceRecord)).one()


def test_every_record_carries_as_of_and_versions(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    rec = _record(rt)
    assert rec.as_of == AFTER_MONTH
    assert rec.qloop_version == metadata.version("qloop")
    assert rec.holidays_version == metadata.version("holidays")


def test_verdict_changed_after_an_upgrade_says_why(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    rt = deployment.open()
    run_once(rt)
    assert _record(rt).response_met is False
    # as if an older holidays release had judged it met, with no finding
    with rt.db.session() as s:
        s.execute(
            update(ComplianceRecord).values(
                holidays_version="0.58", response_met=True, findings=[], raised=True
            )
        )
        s.execute(update(Incident).values(revision=Incident.revision + 1))
    deployment.clock.advance(hours=1)
    with caplog.at_level(logging.INFO, logger="qloop.loop"):
        result = evaluate(rt)
    assert result.counts["verdicts_changed_by_upgrade"] == 2  # response_met and findings
    now = metadata.version("holidays")
    lines = [r.getMessage() for r in caplog.records if "changed" in r.getMessage()]
    why = f"after holidays 0.58 → {now}"
    assert f"evaluate: V-1 (itsm) response_met changed True → False {why}" in lines
    changed = "findings changed [] → [callback_missed:minor, response_breach:major]"
    assert f"evaluate: V-1 (itsm) {changed} {why}" in lines
    rec = _record(rt)
    assert rec.holidays_version == now and rec.as_of == deployment.clock.now


def test_same_versions_change_silently(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:  # new facts, same versions: an ordinary recompute
        s.execute(update(ComplianceRecord).values(response_met=True))
        s.execute(update(Incident).values(revision=Incident.revision + 1))
    with caplog.at_level(logging.INFO, logger="qloop.loop"):
        result = evaluate(rt)
    assert result.counts["verdicts_changed_by_upgrade"] == 0
    assert not [r for r in caplog.records if "changed" in r.getMessage()]
