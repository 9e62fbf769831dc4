"""The whole loop on the sandbox connectors: complete, idempotent, across processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.loop import run_once
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Match,
    Nonconformity,
    OutboxItem,
    Response,
    SurveyInvitation,
)
from tests.utils.loop import Deployment, sandbox_config


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(sandbox_config(database_url, tmp_path, incidents=80, failure_rate=0.1))
    yield dep
    dep.close()


def _count(rt: object, model: object, *where: object) -> int:
    with rt.db.session() as s:  # type: ignore[attr-defined]
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_sandbox_month_runs_to_a_fixed_point(deployment: Deployment) -> None:
    rt = deployment.open()
    for _ in range(3):
        summary = run_once(rt)
        assert summary.errors == []
    incidents = _count(rt, Incident)
    assert incidents > 0
    # every incident with a standing resolution has exactly one live callback task
    with rt.db.session() as s:
        standing = s.scalar(
            select(func.count())
            .select_from(ComplianceRecord)
            .where(ComplianceRecord.resolved_at.is_not(None), ComplianceRecord.cancelled.is_(False))
        )
        live = s.execute(
            select(CallbackTask.incident_id, func.count())
            .where(CallbackTask.state != "superseded")
            .group_by(CallbackTask.incident_id)
        ).all()
    assert standing and len(live) == standing
    assert all(n == 1 for _, n in live)
    # every answer is matched or waits in the review queue
    assert _count(rt, Response) == _count(rt, Match) > 0
    assert _count(rt, Response, Response.matched.is_(False)) == 0
    # nothing is left to send; every nonconformity reached the ITSM
    assert _count(rt, OutboxItem, OutboxItem.state.in_(("pending", "sending", "dead"))) == 0
    assert _count(rt, Nonconformity) > 0
    assert (
        _count(
            rt,
            Nonconformity,
            Nonconformity.ticket_ref.is_(None),
            Nonconformity.state != "withdrawn",
        )
        == 0
    )
    assert _count(rt, SurveyInvitation) > 0

    before = {
        m.__name__: _count(rt, m)
        for m in (Incident, CallbackTask, SurveyInvitation, Response, Nonconformity, OutboxItem)
    }
    again = run_once(deployment.open())  # another process, same database and sandbox
    assert again.errors == [] and again.sent() == 0
    after = {
        m.__name__: _count(rt, m)
        for m in (Incident, CallbackTask, SurveyInvitation, Response, Nonconformity, OutboxItem)
    }
    assert after == before
