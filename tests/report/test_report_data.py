"""The report's data (issue 11 item 1): the export's numbers, breakdowns, trend, causes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.cli import main
from core.export.as_of import parse_as_of
from core.loop import run_once
from core.report import build_report, render_report
from tests.report.world import AS_OF, PERIOD
from tests.utils.loop import Deployment


def _export_rows(dep: Deployment, out: Path) -> list[dict[str, Any]]:
    args = ["export", "-c", str(dep.path), "--period", PERIOD, "--format", "jsonl"]
    assert main([*args, "--as-of", AS_OF, "--out", str(out)]) == 0
    text = (out / "qloop-2026-10-default.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_report_numbers_are_the_export_numbers(deployment: Deployment, tmp_path: Path) -> None:
    rt = deployment.open()
    run_once(rt)
    rows = _export_rows(deployment, tmp_path / "x")
    report = build_report(rt, PERIOD, as_of=parse_as_of(AS_OF))
    ind = report.data["policies"][0]["indicators"]

    # recomputed from the export rows alone
    assert ind["resolved"] == len(rows) == 4
    judged = [r for r in rows if r["callback_verdict"] not in ("pending", "untracked")]
    covered = [r for r in judged if r["callback_verdict"] in ("on_time", "late", "unreached_ok")]
    on_time = [r for r in judged if r["callback_verdict"] == "on_time"]
    assert (ind["callback_coverage"]["numerator"], ind["callback_coverage"]["denominator"]) == (
        len(covered),
        len(judged),
    )
    assert ind["callback_on_time"]["numerator"] == len(on_time)
    for kind in ("response", "resolution"):
        measured = [r for r in rows if r[f"{kind}_met"] is not None]
        assert ind[kind]["denominator"] == len(measured)
        assert ind[kind]["numerator"] == sum(1 for r in measured if r[f"{kind}_met"])
        for prio, ratio in ind[f"{kind}_by_priority"].items():
            mine = [r for r in measured if r["priority"] == prio]
            assert ratio["numerator"] == sum(1 for r in mine if r[f"{kind}_met"])
            assert ratio["denominator"] == len(mine)
    scored = [r["callback_score"] for r in rows if r["callback_score"] is not None]
    assert ind["csat"]["callback"]["denominator"] == len(scored)
    assert ind["csat"]["callback"]["numerator"] == sum(1 for s in scored if s >= 4)
    ncs = [n for r in rows for n in r["nonconformities"].split("; ") if n]
    assert ind["nonconformities_total"] == len(ncs)
    for rule, sev in ind["nonconformities"].items():
        for level, count in sev.items():
            assert count == ncs.count(f"{rule}:{level}")

    # breakdown per customer adds up to the whole
    by_customer = report.data["policies"][0]["breakdown"]["customer"]
    assert sorted(by_customer) == ["ACME", "Beta"]
    assert sum(g["resolved"] for g in by_customer.values()) == 4
    assert by_customer["Beta"]["resolved"] == 2


def test_trend_summary_and_disagreement_cause(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    report = build_report(rt, PERIOD, as_of=parse_as_of(AS_OF))
    sec = report.data["policies"][0]
    assert [p["month"] for p in sec["trend"]][-2:] == ["2026-09", "2026-10"]
    assert len(sec["trend"]) == 12
    assert sec["trend"][-2]["resolved"] == 1
    assert sec["trend"][-2]["response_by_priority"]["P3"] == 1.0
    # response compliance fell from 1 of 1 (September) to 3 of 4 in October
    moves = {m["indicator"]: m for m in sec["summary"]}
    assert moves["response"]["direction"] == "down"
    assert moves["response"]["change_pp"] == -25.0
    assert report.default_lang == "zh-CN"

    [row] = sec["sla_disagreements"]
    assert row["incident_key"] == "R-4"
    assert row["kind"] == "resolution"
    assert row["tool_met"] is False
    assert row["causes"] == ["waiting"]
    assert row["measures"]["waiting"] > row["target_s"] >= row["qloop_s"]

    overdue = sec["nonconformities"]["overdue"]
    assert {(o["incident_key"], o["rule"]) for o in overdue} <= {
        ("R-2", "response_breach"),
        ("R-2", "low_satisfaction"),
        ("R-3", "callback_missed"),
    }


def test_json_is_byte_identical_and_localised(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    at = parse_as_of(AS_OF)
    one = render_report(build_report(rt, PERIOD, as_of=at), "json", "zh-CN")
    deployment.clock.advance(days=3)
    run_once(rt)
    two = render_report(build_report(rt, PERIOD, as_of=at), "json", "zh-CN")
    assert one == two
    doc = json.loads(one)
    assert doc["as_of"] == "2026-11-04T16:00:00+00:00"
    assert doc["policies"][0]["policy"] == "default"
    assert doc["summary_text"]["default"][0].startswith("响应达标率由 100.0% 降至 75.0%")
    en = json.loads(render_report(build_report(rt, PERIOD, as_of=at), "json", "en"))
    assert en["summary_text"]["default"][0].startswith("Response compliance fell from 100.0%")
