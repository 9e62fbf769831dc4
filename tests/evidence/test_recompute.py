"""``qloop recompute``: a past month re-evaluated, each change with its cause (issue 11 item 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select, update

from api.cli import main
from core.errors import InputError
from core.loop import run_once
from core.recompute import apply_recompute, diff_csv, recompute_period
from core.records import Category as C
from core.runtime import Runtime
from core.store.models import AuditLog, ComplianceRecord, Incident, StatusEvent
from tests.utils.fixture_connectors import WORLD, incident, register_fixture_types
from tests.utils.loop import AFTER_MONTH, Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")
LATER = datetime(2026, 11, 25, tzinfo=UTC)


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


@pytest.fixture
def rt(deployment: Deployment) -> Runtime:
    runtime = deployment.open()
    run_once(runtime)
    return runtime


def _policies(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _rewrite(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_nothing_changed_reports_nothing(rt: Runtime) -> None:
    rec = recompute_period(rt, "2026-10", as_of=AFTER_MONTH)
    assert rec.changes == [] and rec.unchanged == 1


def test_holidays_version_change_is_named(rt: Runtime) -> None:
    with rt.db.session() as s:  # as if an older holidays release had judged it met
        s.execute(
            update(ComplianceRecord).values(holidays_version="0.58", response_met=True, findings=[])
        )
    rec = recompute_period(rt, "2026-10", as_of=AFTER_MONTH)
    (change,) = rec.changes
    assert change.incident == "V-1" and change.causes == ["holidays"]
    assert change.fields["response_met"] == (True, False)
    assert change.detail["holidays"] == f"0.58 → {metadata.version('holidays')}"
    assert "response_breach:major" in change.fields["findings"][1]
    text = diff_csv(rec).decode("utf-8-sig")
    row = next(line for line in text.splitlines() if '"response_met"' in line)
    assert row.startswith('"default","V-1","itsm","response_met",') and '"holidays"' in row


def test_late_fact_is_named(rt: Runtime) -> None:
    reopened = datetime(2026, 11, 21, 2, tzinfo=UTC)  # after the stored record's as_of
    with rt.db.session() as s:
        inc_id = s.scalar(select(Incident.id))
        seq = s.scalar(select(func.max(StatusEvent.seq)))
        s.add(
            StatusEvent(
                incident_id=inc_id,
                seq=(seq or 0) + 1,
                at=reopened,
                status="Open",
                category="in_progress",
            )
        )
    rec = recompute_period(rt, "2026-10", as_of=LATER)
    (change,) = rec.changes
    assert change.causes == ["late_facts"]
    assert change.detail["late_facts"] == [f"status in_progress at {reopened.isoformat()}"]
    # the reopen leaves the resolution open: the incident no longer belongs to October
    assert change.fields["month"] == ("2026-10", None)
    # as of the stored instant the reopen is not seen: nothing changes
    assert recompute_period(rt, "2026-10", as_of=AFTER_MONTH).changes == []


def test_policy_change_is_named_and_old_rules_can_be_kept(
    rt: Runtime, deployment: Deployment
) -> None:
    old_version = rt.policy("default").version
    doc = _policies(deployment.path)
    old_rules = json.loads(json.dumps(doc["policies"]["default"]))
    doc["policies"]["default"]["response"]["P2"] = "4h"  # the contract changed
    _rewrite(deployment.path, doc)
    rt2 = deployment.open()
    new_version = rt2.policy("default").version
    assert new_version != old_version

    rec = recompute_period(rt2, "2026-10", as_of=AFTER_MONTH)
    (change,) = rec.changes
    assert (
        change.causes == ["policy"] and change.detail["policy"] == f"{old_version} → {new_version}"
    )
    assert change.fields["response_met"] == (False, True)

    with pytest.raises(InputError, match=f"--policy-version '{old_version}' is not defined"):
        recompute_period(rt2, "2026-10", as_of=AFTER_MONTH, policy_version=old_version)

    doc["policies"]["contract-2026"] = old_rules  # the old rules kept under another name
    _rewrite(deployment.path, doc)
    rt3 = deployment.open()
    assert rt3.policy("contract-2026").version == old_version
    assert recompute_period(rt3, "2026-10", as_of=AFTER_MONTH).changes == []  # in force then
    forced = recompute_period(rt3, "2026-10", as_of=AFTER_MONTH, policy_version=new_version)
    assert [c.causes for c in forced.changes] == [["policy"]]


def test_apply_stores_the_records_and_is_audited(rt: Runtime) -> None:
    with rt.db.session() as s:
        s.execute(update(ComplianceRecord).values(holidays_version="0.58", response_met=True))
    rec = recompute_period(rt, "2026-10", as_of=LATER)
    assert apply_recompute(rt, rec, actor="cli:qa") == 1
    with rt.db.session() as s:
        stored = s.scalars(select(ComplianceRecord)).one()
        assert stored.response_met is False and stored.as_of == LATER
        assert stored.holidays_version == metadata.version("holidays")
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "recompute.apply")).one()
        assert entry.actor == "cli:qa" and entry.detail["changed"] == 1
    assert recompute_period(rt, "2026-10", as_of=LATER).changes == []


def test_cli_is_a_dry_run_that_writes_the_diff(
    rt: Runtime, deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with rt.db.session() as s:
        s.execute(update(ComplianceRecord).values(holidays_version="0.58", response_met=True))
    out = tmp_path / "diff"
    args = ["recompute", "-c", str(deployment.path), "--period", "2026-10"]
    assert main([*args, "--as-of", "2026-11-25T00:00Z", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 changed" in printed and "[holidays]" in printed and "dry run" in printed
    doc = json.loads((out / "recompute-2026-10.json").read_text(encoding="utf-8"))
    assert doc["changes"][0]["causes"] == ["holidays"]
    assert "response_met" in (out / "recompute-2026-10.csv").read_text(encoding="utf-8-sig")
    with rt.db.session() as s:  # nothing stored
        assert s.scalars(select(ComplianceRecord)).one().response_met is True
