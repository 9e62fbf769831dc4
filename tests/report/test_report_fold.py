"""The report folds the month a chunk at a time (issue 11 quality bar): the same numbers.

The month streams from ``judge_chunks`` and is folded; these tests show the
fold changes nothing: the facts seen at an instant are the loader's, folds
merged are the whole month's indicators, and chunk boundaries do not move
a byte of the report.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

import core.export.as_of as as_of_module
from core.compliance import NonconformityState
from core.compliance.indicators import IndicatorsFold
from core.export.as_of import (
    facts_seen_at,
    indicators_as_of,
    judge_period,
    month_indicators_as_of,
    parse_as_of,
)
from core.loop import run_once
from core.loop.facts import load_facts
from core.report import build_report, render_report
from core.report.indicators import indicators_of
from core.store.models import Incident
from tests.report.world import AS_OF, PERIOD, L
from tests.utils.loop import Deployment


@pytest.mark.parametrize(
    "at",
    [
        L(10, 14, 10),  # R-4 starts waiting: the change is seen
        L(10, 14, 10) - timedelta(microseconds=1),  # not yet
        L(10, 14, 10) + timedelta(microseconds=999_999),  # same second: seen
        L(10, 23, 16),  # R-4's callback attempt, exactly
        L(10, 23, 15, 59),
        parse_as_of(AS_OF),
    ],
)
def test_facts_seen_at_are_the_loaders(deployment: Deployment, at: object) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        incs = list(s.scalars(select(Incident).order_by(Incident.id)))
        expected = load_facts(s, incs, as_of=at)  # type: ignore[arg-type]
        got = facts_seen_at(s, incs, at)  # type: ignore[arg-type]
    assert got == expected
    assert got  # the world has incidents before every instant tried


def _fold(rt, period, judged):  # type: ignore[no-untyped-def]
    fold = IndicatorsFold(period.month, period.as_of, policy=rt.policy(period.policy))
    for j in judged:
        fold.add(j.incident.priority, j.evaluation)
        for f in j.evaluation.findings:
            nc = j.ncs[f.key]
            closed = nc is not None and nc.state == "closed"
            fold.add_nc(NonconformityState(f.rule, f.severity, closed, f.deadline))
    return fold


def test_folds_merged_are_the_whole_months_indicators(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        period = judge_period(rt, s, "default", PERIOD, parse_as_of(AS_OF))
    whole = indicators_as_of(rt, period).as_dict()
    assert whole["resolved"] == 4
    assert whole["mean_score"]["callback"] == 3.6667  # (5 + 2 + 4) / 3, exact then rounded
    # in reverse order, in one fold
    assert indicators_of([_fold(rt, period, period.incidents[::-1])]) == whole
    # split in two folds (as two policies' or two chunks'), merged
    halves = [period.incidents[0::2], period.incidents[1::2]]
    merged = indicators_of([_fold(rt, period, half) for half in halves])
    assert merged == whole
    # folded while judged, as `qloop evaluate --as-of` and GET /reports?as_of= do
    with rt.db.session() as s:
        streamed = month_indicators_as_of(rt, s, "default", PERIOD, parse_as_of(AS_OF))
    assert streamed.as_dict() == whole


def test_chunk_boundaries_change_no_byte(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = deployment.open()
    run_once(rt)
    at = parse_as_of(AS_OF)
    whole = build_report(rt, PERIOD, as_of=at)
    monkeypatch.setattr(as_of_module, "JUDGE_CHUNK", 1)
    one_by_one = build_report(rt, PERIOD, as_of=at)
    assert one_by_one.data == whole.data
    for fmt in ("json", "html"):
        assert render_report(one_by_one, fmt, "en") == render_report(whole, fmt, "en")
    sec = whole.data["policies"][0]
    assert sec["indicators"]["resolved"] == 4
    assert [d["incident_key"] for d in sec["sla_disagreements"]] == ["R-4"]


@pytest.mark.parametrize("at", [parse_as_of(AS_OF), L(10, 14, 15), L(10, 14, 14, 59)])
def test_one_read_finds_each_months_incidents(deployment: Deployment, at: object) -> None:
    rt = deployment.open()
    run_once(rt)
    months = ["2026-08", "2026-09", "2026-10", "2026-11"]
    with rt.db.session() as s:
        found = as_of_module.month_candidates(rt, s, "default", months, at)  # type: ignore[arg-type]
        for month in months:
            judged = judge_period(rt, s, "default", month, at)  # type: ignore[arg-type]
            ids = list(as_of_module.judge_chunks(rt, s, "default", month, at))  # type: ignore[arg-type]
            mine = {j.incident.id for c in ids for j in c.incidents}
            assert {j.incident.id for j in judged.incidents} <= set(found[month])
            assert mine == {j.incident.id for j in judged.incidents}
            tz = rt.policy("default").calendar.tz
            start, end = as_of_module.month_bounds(month, tz)
            sources = list(rt.config.sources)
            assert found[month] == as_of_module._candidates(s, sources, start, end, at)  # type: ignore[arg-type]
    assert len(found["2026-09"]) == 1  # S-9
    assert len(found["2026-10"]) == (
        4 if at == parse_as_of(AS_OF) else 2 if at == L(10, 14, 15) else 1
    )
