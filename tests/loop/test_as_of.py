"""Evaluation instant (SPEC §10; issue 9 item 11): evaluate, export and report ``--as-of``.

Clock: 2026-11-20T00:00Z. Calendar: Asia/Shanghai, Mon–Fri 09:00–12:00 and
13:00–18:00, CN holidays (Oct 1–7 off, Sat Oct 10 worked). Callback due =
resolution + 86,400 s.

- A-1 (P3): resolved Tue 10-13 15:00; reached on time 10-14 10:00 (score 5).
- A-2 (P2): answered after 2 business hours (target 30 min) → response
  breach, resolved Wed 10-14 15:00; reached on time.
- A-3 (P3): resolved Thu 10-15 15:00, due Fri 10-16 15:00; nobody ever reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from api.cli import main
from core.export.as_of import judge_period, parse_as_of
from core.export.nc_sheet import NC_COLUMNS
from core.loop import run_once
from core.records import Category as C
from core.store.models import ComplianceRecord, Nonconformity
from tests.utils.fixture_connectors import WORLD, attempt, incident, register_fixture_types
from tests.utils.loop import Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-10"


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def _resolved(key: str, prio: str, created: datetime, answered: datetime, done: datetime) -> Any:
    return incident(
        key, prio, created, [(created, C.NEW), (answered, C.IN_PROGRESS), (done, C.RESOLVED)]
    )


def _world() -> None:
    WORLD.reset()
    WORLD.incidents = [
        _resolved("A-1", "P3", L(10, 13, 9), L(10, 13, 9, 10), L(10, 13, 15)),
        _resolved("A-2", "P2", L(10, 14, 9), L(10, 14, 11), L(10, 14, 15)),
        _resolved("A-3", "P3", L(10, 15, 9), L(10, 15, 9, 10), L(10, 15, 15)),
    ]
    WORLD.answers = {
        "A-1": [attempt(L(10, 14, 10), True, True, 5)],
        "A-2": [attempt(L(10, 15, 10), True, True, 5)],
    }


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    _world()
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()


def _cli(*args: str) -> int:
    return main(list(args))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _export(dep: Deployment, out: Path, fmt: str, *extra: str) -> dict[str, bytes]:
    args = ["export", "-c", str(dep.path), "--period", PERIOD, "--format", fmt]
    assert _cli(*args, "--out", str(out), *extra) == 0
    return _files(out)


def _jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def test_export_as_of_is_byte_identical_when_facts_arrive_after_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    rt = deployment.open()
    run_once(rt)
    as_of = "2026-11-05T00:00:00+08:00"
    first = {
        fmt: _export(deployment, tmp_path / f"1-{fmt}", fmt, "--as-of", as_of)
        for fmt in ("csv", "xlsx", "jsonl")
    }
    stored_before = _export(deployment, tmp_path / "stored-1", "jsonl")

    # after as_of: A-1 is reopened and resolved again in November, A-3 is finally reached
    a1 = WORLD.incidents[0]
    WORLD.incidents[0] = incident(
        "A-1",
        "P3",
        a1.created_at,
        [(c.at, c.category) for c in a1.history]
        + [(L(11, 10, 9), C.IN_PROGRESS), (L(11, 10, 15), C.RESOLVED)],
    )
    deployment.clock.advance(days=1)
    run_once(rt)
    deployment.clock.advance(days=2)
    run_once(rt)

    stored_after = _export(deployment, tmp_path / "stored-2", "jsonl")
    keys = lambda files: [r["incident_key"] for r in _jsonl(files["qloop-2026-10-default.jsonl"])]  # noqa: E731
    assert keys(stored_before) == ["A-1", "A-2", "A-3"]
    assert keys(stored_after) == ["A-2", "A-3"]  # A-1 belongs to November now

    for fmt in ("csv", "xlsx", "jsonl"):
        again = _export(deployment, tmp_path / f"2-{fmt}", fmt, "--as-of", as_of)
        assert again == first[fmt], fmt
    rows = _jsonl(first["jsonl"]["qloop-2026-10-default.jsonl"])
    assert [r["incident_key"] for r in rows] == ["A-1", "A-2", "A-3"]
    assert {r["evaluated_at"] for r in rows} == {"2026-11-05T00:00:00+08:00"}
    assert [r["callback_verdict"] for r in rows] == ["on_time", "on_time", "missed"]


def test_pending_before_due_missed_after(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = deployment.open()
    run_once(rt)
    verdicts = {}
    for as_of in ("2026-10-16T14:59:59+08:00", "2026-10-16T15:00:01+08:00"):
        with rt.db.session() as s:
            period = judge_period(rt, s, "default", PERIOD, parse_as_of(as_of))
        verdicts[as_of] = {j.incident.key: j.values["callback_verdict"] for j in period.incidents}
    assert verdicts["2026-10-16T14:59:59+08:00"]["A-3"] == "pending"
    assert verdicts["2026-10-16T15:00:01+08:00"]["A-3"] == "missed"

    # the same through `qloop evaluate`: pending is left out of coverage, missed is not
    coverage = []
    for as_of in verdicts:
        capsys.readouterr()
        assert (
            _cli("evaluate", "-c", str(deployment.path), "--period", PERIOD, "--as-of", as_of) == 0
        )
        doc = json.loads(capsys.readouterr().out)
        assert doc["as_of"] == parse_as_of(as_of).isoformat()
        [report] = doc["policies"]
        cov = report["indicators"]["callback_coverage"]
        coverage.append((cov["numerator"], cov["denominator"]))
    assert coverage == [(2, 2), (2, 3)]
    # evaluate wrote nothing: the stored records are the loop's, as of its clock
    with rt.db.session() as s:
        assert {r.as_of for r in s.scalars(select(ComplianceRecord))} == {deployment.clock.now}


def test_status_before_as_of_is_not_the_current_one(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:  # A-3 before its resolution: in progress, not in the month yet
        period = judge_period(rt, s, "default", PERIOD, parse_as_of("2026-10-15T14:00:00+08:00"))
    assert [j.incident.key for j in period.incidents] == ["A-1", "A-2"]


@pytest.mark.parametrize("value", ["2026-11-05T00:00:00", "2026-11-05", "soon"])
def test_as_of_without_zone_is_refused_naming_the_flag(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str
) -> None:
    rt = deployment.open()
    run_once(rt)
    for args in (
        ["evaluate", "-c", str(deployment.path), "--period", PERIOD],
        ["export", "-c", str(deployment.path), "--period", PERIOD, "--out", str(tmp_path / "x")],
    ):
        with pytest.raises(SystemExit) as exc:
            _cli(*args, "--as-of", value)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--as-of" in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_nonconformity_sheet_columns_state_and_masking(
    deployment: Deployment, tmp_path: Path
) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:  # a detail quoting a customer (as a survey comment would)
        s.execute(update(Nonconformity).values(detail="customer said: call me at +8613912345678"))
    files = _export(deployment, tmp_path / "masked", "jsonl")
    masked = _jsonl(files["qloop-2026-10-default-nonconformities.jsonl"])
    raw = _jsonl(
        _export(deployment, tmp_path / "raw", "jsonl", "--unmask")[
            "qloop-2026-10-default-nonconformities.jsonl"
        ]
    )
    rules = sorted((r["incident_key"], r["rule"]) for r in masked)
    assert rules == [("A-2", "response_breach"), ("A-3", "callback_missed")]
    for row in masked:
        assert tuple(row) == NC_COLUMNS
        assert "13912345678" not in row["detail"] and "call me at" in row["detail"]
        assert row["state"] == "ticketed" and row["ticket_ref"] in {"QA-1", "QA-2"}
        assert row["withdrawn_at"] is None and row["revision"] == 1
    assert all("+8613912345678" in r["detail"] for r in raw)
    a2 = next(r for r in masked if r["incident_key"] == "A-2")
    # raised at the first response (10-14 11:00), rectify by the end of the 10th working day after
    assert a2["severity"] == "major" and a2["resolution"] == "response"
    assert a2["raised_at"] == "2026-10-14T11:00:00+08:00"
    assert a2["deadline"] == "2026-10-28T18:00:00+08:00"
    a3 = next(r for r in masked if r["incident_key"] == "A-3")
    assert a3["resolution"] == "2026-10-15T15:00:00+08:00"
    assert a3["raised_at"] == "2026-10-16T15:00:00+08:00"

    # as of before the loop raised anything: the findings of then, not raised yet
    early = _export(deployment, tmp_path / "early", "jsonl", "--as-of", "2026-10-20T00:00:00+08:00")
    rows = _jsonl(early["qloop-2026-10-default-nonconformities.jsonl"])
    assert [(r["incident_key"], r["rule"], r["state"], r["ticket_ref"]) for r in rows] == [
        ("A-2", "response_breach", "not_raised", None),
        ("A-3", "callback_missed", "not_raised", None),
    ]
    # as of after the loop raised them: their tickets as stored
    late = _export(deployment, tmp_path / "late", "jsonl", "--as-of", "2026-11-20T00:00:00+00:00")
    rows = _jsonl(late["qloop-2026-10-default-nonconformities.jsonl"])
    assert {r["state"] for r in rows} == {"ticketed"}
    assert {r["ticket_ref"] for r in rows} == {"QA-1", "QA-2"}
