"""The whole loop against scripted connectors, checked against hand-computed verdicts.

Calendar: Asia/Shanghai, Mon–Fri 09:00–12:00 and 13:00–18:00 (8 h a
business day), CN holidays (National Day 2026-10-01..07; Saturday
2026-10-10 is an adjusted working day). Targets: P2 response 30 m /
resolution 8 h; P3 4 h / 3 bd; P4 1 bd / 5 bd. Clock: 2026-11-20 UTC.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from api import console
from core.loop import run_once
from core.loop.reconcile import resolve_review
from core.records import Category as C
from core.store.models import (
    CallbackTask,
    Incident,
    Match,
    Nonconformity,
    OutboxItem,
    SurveyInvitation,
)
from tests.utils.fixture_connectors import (
    WORLD,
    answer,
    attempt,
    incident,
    register_fixture_types,
)
from tests.utils.loop import Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def _world() -> None:
    WORLD.reset()
    WORLD.incidents = [
        # A: P3, answered 30 min after creation, resolved the same day; called back next morning
        incident(
            "ITSD-1",
            "P3",
            L(10, 15, 10),
            [
                (L(10, 15, 10), C.NEW),
                (L(10, 15, 10, 30), C.IN_PROGRESS),
                (L(10, 15, 16), C.RESOLVED),
            ],
        ),
        # B: P2 opened the evening before National Day, answered after it: response breach
        incident(
            "ITSD-2",
            "P2",
            L(9, 30, 17),
            [(L(9, 30, 17), C.NEW), (L(10, 8, 9, 30), C.IN_PROGRESS), (L(10, 8, 11), C.RESOLVED)],
            sla={"response_met": True, "resolution_met": True},
        ),
        # C: P4 with a wait for the customer and a reopen
        incident(
            "ITSD-3",
            "P4",
            L(10, 19, 9),
            [
                (L(10, 19, 9), C.NEW),
                (L(10, 19, 10), C.IN_PROGRESS),
                (L(10, 19, 11), C.WAITING),
                (L(10, 20, 9), C.IN_PROGRESS),
                (L(10, 20, 10), C.RESOLVED),
                (L(10, 21, 9), C.IN_PROGRESS),
                (L(10, 21, 12), C.RESOLVED),
            ],
        ),
        # D: cancelled: excluded from everything
        incident(
            "ITSD-4", "P3", L(10, 12, 9), [(L(10, 12, 9), C.NEW), (L(10, 12, 10), C.CANCELLED)]
        ),
        # E: P1 still being worked on
        incident(
            "ITSD-5", "P1", L(10, 30, 9), [(L(10, 30, 9), C.NEW), (L(10, 30, 9, 10), C.IN_PROGRESS)]
        ),
        # F: its callback comes back without a token: matched by the caller's number
        incident(
            "ITSD-6",
            "P3",
            L(10, 27, 9),
            [(L(10, 27, 9), C.NEW), (L(10, 27, 9, 5), C.IN_PROGRESS), (L(10, 27, 10), C.RESOLVED)],
            phone="13911112222",
        ),
        # G and H: same phone, same day: an answer without token is ambiguous
        incident(
            "ITSD-7",
            "P3",
            L(10, 28, 9),
            [(L(10, 28, 9), C.NEW), (L(10, 28, 9, 5), C.IN_PROGRESS), (L(10, 28, 10), C.RESOLVED)],
            phone="13700000000",
        ),
        incident(
            "ITSD-8",
            "P3",
            L(10, 28, 9),
            [(L(10, 28, 9), C.NEW), (L(10, 28, 9, 5), C.IN_PROGRESS), (L(10, 28, 10), C.RESOLVED)],
            phone="13700000000",
        ),
    ]
    WORLD.answers = {
        "ITSD-1": [attempt(L(10, 16, 9), True, True, 5), answer(L(10, 18, 10), 5)],
        "ITSD-3": [
            attempt(L(10, 20, 15), True, False, 2),
            attempt(L(10, 21, 13), False),
            attempt(L(10, 21, 14), False),
            attempt(L(10, 21, 15), False),
            answer(L(10, 23, 10), 3),
        ],
        "ITSD-6": [attempt(L(10, 27, 15), True, True, 4, token=False, phone="+86 139 1111 2222")],
        "ITSD-7": [attempt(L(10, 28, 15), True, True, 5, token=False, phone="13700000000")],
    }


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    _world()
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()


def _rows(tmp_path: Path, rt: object, fmt: str = "jsonl") -> dict[str, dict[str, object]]:
    files = console.export(rt, "2026-10", fmt, tmp_path / "out")  # type: ignore[arg-type]
    lines = files[0].read_text(encoding="utf-8").splitlines()
    return {r["incident_key"]: r for r in map(json.loads, lines)}


def test_loop_verdicts_match_hand_computation(deployment: Deployment, tmp_path: Path) -> None:
    rt = deployment.open()
    first = run_once(rt)
    assert first.errors == []
    run_once(rt)  # collects the survey answers sent in the first run
    rows = _rows(tmp_path, rt)

    assert set(rows) == {"ITSD-1", "ITSD-2", "ITSD-3", "ITSD-6", "ITSD-7", "ITSD-8"}
    a, b, c = rows["ITSD-1"], rows["ITSD-2"], rows["ITSD-3"]
    # A: 10:00→10:30 = 1,800 s; 10:00–12:00 + 13:00–16:00 = 18,000 s of 3 × 8 h
    assert (a["response_s"], a["response_met"]) == (1800, True)
    assert (a["resolution_s"], a["resolution_target_s"], a["resolution_met"]) == (
        18000,
        86400,
        True,
    )
    assert a["callback_verdict"] == "on_time" and a["confirmed"] is True
    assert (a["callback_score"], a["survey_score"]) == (5.0, 5.0)
    assert a["nonconformities"] == ""
    # B: 09-30 17:00–18:00 (1 h), holidays 10-01..07, 10-08 09:00–09:30 → 5,400 s > 1,800
    assert (b["response_s"], b["response_met"]) == (5400, False)
    assert (b["resolution_s"], b["resolution_met"]) == (10800, True)
    assert b["callback_verdict"] == "missed"
    assert b["sla_disagreement"] == "response"
    assert b["nonconformities"] == "callback_missed:minor; response_breach:major"
    # C: 1 h new + 1 h in progress + (wait) + 1 h + (resolved, reopened) 3 h = 21,600 s
    assert (c["response_s"], c["resolution_s"], c["resolution_met"]) == (3600, 21600, True)
    assert c["reopen_count"] == 1
    assert c["callback_verdict"] == "unreached_ok"
    assert c["survey_score"] == 3.0
    assert c["nonconformities"] == (
        "low_satisfaction:major; low_satisfaction:minor; not_confirmed:major"
    )
    assert rows["ITSD-6"]["callback_verdict"] == "on_time"  # matched by contact
    assert rows["ITSD-7"]["callback_verdict"] == "missed"  # its answer waits for review
    assert rows["ITSD-8"]["callback_verdict"] == "missed"

    with rt.db.session() as s:
        nc = {
            (n.rule, n.resolution_key): n
            for n in s.scalars(select(Nonconformity).join(Incident).where(Incident.key == "ITSD-2"))
        }
        breach = nc[("response_breach", "response")]
        assert breach.raised_at == L(10, 8, 9, 30)
        # 10 working days strictly after 10-08: 9, 10 (adjusted Saturday), 12…16, 19, 20, 21
        assert breach.deadline == L(10, 21, 18)
        missed = next(n for (rule, _), n in nc.items() if rule == "callback_missed")
        assert missed.raised_at == L(10, 9, 11)  # due = resolution + 86,400 s
        assert missed.deadline == L(10, 22, 18)
        assert (
            s.scalar(
                select(func.count())
                .select_from(CallbackTask)
                .join(Incident)
                .where(Incident.key.in_(["ITSD-4", "ITSD-5"]))
            )
            == 0
        )


def test_second_run_sends_nothing_and_tickets_exist_once(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    run_once(rt)
    sent, creates = dict(WORLD.sent), WORLD.create_calls
    with rt.db.session() as s:
        ncs = s.scalar(select(func.count()).select_from(Nonconformity))
        states = dict(
            s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
        )
    assert ncs == 7 and len(WORLD.tickets) == 7
    assert states == {"sent": len(WORLD.sent) + 7}
    again = run_once(deployment.open())  # a new process on the same database
    assert again.sent() == 0
    assert WORLD.sent == sent and WORLD.create_calls == creates
    assert len({t.dedup_key for t in WORLD.tickets.values()}) == len(WORLD.tickets) == 7


def test_ambiguous_answer_waits_for_review_then_counts(
    deployment: Deployment, tmp_path: Path
) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        review = list(s.scalars(select(Match).where(Match.status == "review")))
        g = s.scalar(select(Incident.id).where(Incident.key == "ITSD-7"))
        h = s.scalar(select(Incident.id).where(Incident.key == "ITSD-8"))
    assert len(review) == 1
    assert review[0].reason.startswith("ambiguous") and sorted(review[0].candidates) == [g, h]
    resolve_review(rt, review[0].id, g, actor="qa@example.com")
    run_once(rt)
    rows = _rows(tmp_path, rt)
    assert rows["ITSD-7"]["callback_verdict"] == "on_time"
    with rt.db.session() as s:
        missed = s.scalar(
            select(Nonconformity)
            .join(Incident)
            .where(Incident.key == "ITSD-7", Nonconformity.rule == "callback_missed")
        )
        assert missed is not None and missed.state == "withdrawn"


def test_indicators_of_the_month(deployment: Deployment, tmp_path: Path) -> None:
    rt = deployment.open()
    run_once(rt)
    run_once(rt)
    console.export(rt, "2026-10", "jsonl", tmp_path / "out")
    ind = json.loads((tmp_path / "out" / "qloop-2026-10-default-indicators.json").read_text())
    assert ind["resolved"] == 6
    # on time: A, F; unreached_ok: C; missed: B, G, H
    assert ind["callback_coverage"]["numerator"] == 3
    assert ind["callback_coverage"]["denominator"] == 6
    assert ind["callback_on_time"]["numerator"] == 2
    assert (ind["response"]["numerator"], ind["response"]["denominator"]) == (5, 6)
    assert (ind["csat"]["survey"]["numerator"], ind["csat"]["survey"]["denominator"]) == (1, 2)
    assert ind["nonconformities_total"] == 7
    with rt.db.session() as s:
        invited = s.scalar(select(func.count()).select_from(SurveyInvitation))
    assert invited == 6  # rate 1.0: every resolved, not cancelled incident


def test_csv_export_opens_in_excel_with_chinese_text_masked(
    deployment: Deployment, tmp_path: Path
) -> None:
    rt = deployment.open()
    run_once(rt)
    files = console.export(rt, "2026-10", "csv", tmp_path / "csv")
    raw = files[0].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0]["title"].endswith("打印机无法连接")
    assert {r["contact_phone"] for r in rows} >= {"138****0000"}
    assert all(r["contact_name"] == "张*" for r in rows)
    unmasked = console.export(rt, "2026-10", "csv", tmp_path / "raw", unmask=True)
    assert "13800000000" in unmasked[0].read_text(encoding="utf-8-sig")


def test_xlsx_export_has_incidents_and_indicators(deployment: Deployment, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    rt = deployment.open()
    run_once(rt)
    (path,) = console.export(rt, "2026-10", "xlsx", tmp_path / "x")
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["incidents", "indicators", "nonconformities"]
    assert book["incidents"].max_row == 7  # header + 6 incidents
