"""Tracking start (SPEC §11): a first run against history contacts nobody about it.

Clock: 2026-11-20T00:00:00Z (08:00 in Shanghai). Calendar: Asia/Shanghai,
Mon–Fri 09:00–12:00 and 13:00–18:00, CN holidays. Callback due = resolution
+ 86,400 s; a resolution whose due is before the source's tracking start is
``untracked``: no callback task, no survey, no callback nonconformity.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from api import console
from core.export import period_indicators
from core.loop import run_once
from core.loop.common import StepResult
from core.loop.plan import plan
from core.loop.pull import upsert_records
from core.records import Category as C
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Nonconformity,
    OutboxItem,
    SampleRun,
    SourceState,
    SurveyInvitation,
)
from tests.utils.fixture_connectors import WORLD, attempt, incident, register_fixture_types
from tests.utils.loop import AFTER_MONTH, Deployment, fixture_config, sandbox_config

SH = ZoneInfo("Asia/Shanghai")
S = timedelta(seconds=1)


def L(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=SH)


def _no_tracking_from(path: Path) -> Path:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for src in doc["sources"].values():
        src.pop("tracking_from", None)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _set_tracking_from(path: Path, value: str) -> Path:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for src in doc["sources"].values():
        src["tracking_from"] = value
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _resolved(key: str, priority: str, created: datetime, resolved: datetime) -> Any:
    history = [(created, C.NEW), (created + 60 * S, C.IN_PROGRESS), (resolved, C.RESOLVED)]
    return incident(key, priority, created, history)


@pytest.fixture
def history(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """A fixture source holding history, with no tracking_from in the config."""
    register_fixture_types()
    WORLD.reset()
    WORLD.incidents = [
        # due 11-19 02:00Z: before the first sync (11-20 00:00Z) → untracked
        _resolved("H-1", "P3", L(11, 18, 9), L(11, 18, 10)),
        # due 11-20 00:00:00Z = the tracking start exactly → tracked (not before it)
        _resolved("H-2", "P3", L(11, 19, 7), L(11, 19, 8)),
        # one second earlier: due 11-19 23:59:59Z → untracked
        _resolved("H-3", "P3", L(11, 19, 7), L(11, 19, 7, 59, 59)),
        # October: P2 answered after 2 h of business time → response breach, untracked
        incident(
            "H-4",
            "P2",
            L(10, 13, 9),
            [(L(10, 13, 9), C.NEW), (L(10, 13, 11), C.IN_PROGRESS), (L(10, 13, 15), C.RESOLVED)],
        ),
    ]
    # H-2's customer is reached on time; the others would answer too if ever phoned
    WORLD.answers = {
        "H-1": [attempt(L(11, 19, 9), True, False, 1)],
        "H-2": [attempt(L(11, 19, 20), True, True, 5)],
        "H-3": [attempt(L(11, 20, 9), True, False, 1)],
        "H-4": [attempt(L(10, 14, 9), True, False, 1)],
    }
    dep = Deployment(_no_tracking_from(fixture_config(database_url, tmp_path)))
    yield dep
    dep.close()


def _by_key(rt: Any) -> dict[str, ComplianceRecord]:
    with rt.db.session() as s:
        return {
            key: rec
            for rec, key in s.execute(
                select(ComplianceRecord, Incident.key).join(
                    Incident, Incident.id == ComplianceRecord.incident_id
                )
            )
        }


def test_first_run_against_history_contacts_nobody_about_it(
    history: Deployment, tmp_path: Path
) -> None:
    rt = history.open()
    first = run_once(rt)
    assert first.errors == []
    with rt.db.session() as s:
        assert s.get(SourceState, "itsm").tracking_from == AFTER_MONTH  # the first sync's end
        tasks = {
            key: task
            for task, key in s.execute(
                select(CallbackTask, Incident.key).join(
                    Incident, Incident.id == CallbackTask.incident_id
                )
            )
        }
        assert set(tasks) == {"H-2"}
        assert tasks["H-2"].due_at == AFTER_MONTH
        assert s.scalars(select(SurveyInvitation)).all() == []
        # October's sample was drawn over nobody: its only resolution is untracked
        assert [(r.month, r.population) for r in s.scalars(select(SampleRun))] == [("2026-10", 0)]
        kinds = sorted(o.kind for o in s.scalars(select(OutboxItem)))
        assert kinds == ["callback", "ticket"]  # H-2's callback; H-4's response breach
    assert {m.incident_key for m in WORLD.sent.values()} == {"H-2"}

    # later: every due has passed; the verdicts are final
    history.clock.advance(days=3)
    run_once(rt)
    recs = _by_key(rt)
    verdicts = {k: r.callback_verdict for k, r in recs.items()}
    assert verdicts == {
        "H-1": "untracked",
        "H-2": "on_time",
        "H-3": "untracked",
        "H-4": "untracked",
    }
    assert recs["H-2"].callback_due == AFTER_MONTH
    assert recs["H-3"].callback_due == AFTER_MONTH - S
    with rt.db.session() as s:
        assert s.get(SourceState, "itsm").tracking_from == AFTER_MONTH  # set once
        ncs = {
            (key, nc.rule)
            for nc, key in s.execute(
                select(Nonconformity, Incident.key).join(
                    Incident, Incident.id == Nonconformity.incident_id
                )
            )
        }
        # SLAs are judged for all history; nothing about a callback that was never made
        assert ncs == {("H-4", "response_breach")}
        indicators = period_indicators(
            s,
            policy="default",
            version=rt.policy("default").version,
            month="2026-10",
            now=rt.now(),
            rules=rt.policy("default"),
        )
    assert (indicators.resolved, indicators.untracked) == (1, 1)
    assert indicators.callback_coverage.denominator == 0
    assert indicators.callback_on_time.denominator == 0
    assert indicators.response.denominator == 1 and indicators.response.numerator == 0
    files = console.export(rt, "2026-10", "jsonl", tmp_path / "out")
    [row] = [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]
    assert (row["incident_key"], row["callback_verdict"]) == ("H-4", "untracked")
    assert "callback" not in row["nonconformities"]


def test_no_plan_before_the_first_successful_sync(history: Deployment) -> None:
    rt = history.open()
    # incidents stored by a pull that has not finished: no tracking start yet
    with rt.db.session() as s:
        upsert_records(s, "itsm", WORLD.incidents, rt.now(), StepResult("pull"))
    result = plan(rt)
    assert result.counts["callbacks"] == 0 and result.counts["awaiting_tracking_start"] == 4
    with rt.db.session() as s:
        assert s.scalars(select(CallbackTask)).all() == []
    # the pull ends: tracking starts, the waiting incident is planned
    run_once(rt)
    with rt.db.session() as s:
        assert [t.due_at for t in s.scalars(select(CallbackTask))] == [AFTER_MONTH]


def test_explicit_tracking_from_in_config(history: Deployment) -> None:
    # tracking from 11-19 02:00:01Z (explicit, it wins over the first sync's instant):
    # H-2 (due 11-20 00:00Z) and H-3 (due 11-19 23:59:59Z) are tracked
    _set_tracking_from(history.path, "2026-11-19T02:00:01+00:00")
    rt = history.open()
    run_once(rt)
    history.clock.advance(days=3)
    run_once(rt)
    verdicts = {k: r.callback_verdict for k, r in _by_key(rt).items()}
    # H-1 is due 02:00:00Z, one second before the start: untracked; H-3's customer was
    # reached after its due (11-20 01:00Z): late, and did not confirm
    assert verdicts == {"H-1": "untracked", "H-2": "on_time", "H-3": "late", "H-4": "untracked"}
    with rt.db.session() as s:
        # the stored first-sync instant does not override the config
        assert s.get(SourceState, "itsm").tracking_from == AFTER_MONTH
        planned = {
            key
            for (key,) in s.execute(
                select(Incident.key).join(CallbackTask, CallbackTask.incident_id == Incident.id)
            )
        }
    assert planned == {"H-2", "H-3"}
    assert {m.incident_key for m in WORLD.sent.values()} == {"H-2", "H-3"}


def test_sandbox_month_with_tracking_from_mid_month(database_url: str, tmp_path: Path) -> None:
    start = datetime(2026, 10, 16, tzinfo=SH).astimezone(UTC)
    path = sandbox_config(database_url, tmp_path, incidents=80)
    _set_tracking_from(path, "2026-10-16")  # a date: its start in the policy calendar's zone
    dep = Deployment(path)
    try:
        rt = dep.open()
        assert rt.config.sources["itsm"].tracking_from == start
        for _ in range(3):
            run_once(rt)
        with rt.db.session() as s:
            recs = list(
                s.scalars(select(ComplianceRecord).where(ComplianceRecord.month == "2026-10"))
            )
            untracked = {r.incident_id for r in recs if r.callback_verdict == "untracked"}
            tracked = {r.incident_id for r in recs if r.callback_verdict != "untracked"}
            assert untracked and tracked
            for r in recs:
                assert (r.callback_verdict == "untracked") == (r.callback_due < start), (
                    r.incident_id
                )
            tasks = list(s.scalars(select(CallbackTask)))
            assert tasks and all(t.due_at >= start for t in tasks)
            assert not {t.incident_id for t in tasks} & untracked
            invited = set(s.scalars(select(SurveyInvitation.incident_id)))
            assert invited and not invited & untracked
            ncs = list(s.scalars(select(Nonconformity)))
            callback_rules = {
                "callback_missed",
                "callback_late",
                "not_confirmed",
                "low_satisfaction",
            }
            assert not [n for n in ncs if n.incident_id in untracked and n.rule in callback_rules]
            ind = period_indicators(
                s,
                policy="default",
                version=rt.policy("default").version,
                month="2026-10",
                now=rt.now(),
                rules=rt.policy("default"),
            )
        assert ind.untracked == len(untracked)
        pending = sum(1 for r in recs if r.callback_verdict == "pending")
        assert ind.callback_coverage.denominator == len(tracked) - pending
    finally:
        dep.close()
