"""The campaign results report: intervals, non-response, masked comments, comparison, bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.campaign import collect_answers, launch_campaign, plan_campaign
from core.campaign.results import campaign_results, mean_interval, t975, wilson_interval
from core.report.campaign import render_results
from core.runtime import Runtime
from tests.campaign.test_campaign import CSID, _members, deployment, fake  # noqa: F401
from tests.fakes.limesurvey import FakeLimeSurvey
from tests.utils.loop import Deployment

ITEMS = {
    "overall": {"question": "SAT", "scale": [0, 10]},
    "resolved": {"question": "CONF", "yes_codes": ["Y"]},
}


def test_intervals_match_the_textbook_values() -> None:
    est = mean_interval([6.0, 7.0, 8.0, 9.0])  # s = 1.29099, t(3) = 3.182
    assert est.value == 7.5
    assert est.low == pytest.approx(7.5 - 3.182 * 1.290994 / 2, abs=1e-4)
    assert est.high == pytest.approx(7.5 + 3.182 * 1.290994 / 2, abs=1e-4)
    assert mean_interval([5.0]).low is None and mean_interval([]).value is None
    share = wilson_interval(3, 4)  # Wilson 95%: 0.3006 .. 0.9544
    assert share.value == 0.75
    assert share.low == pytest.approx(0.3006, abs=1e-4)
    assert share.high == pytest.approx(0.9544, abs=1e-4)
    assert wilson_interval(0, 10).low == 0.0
    assert t975(1) == 12.706 and t975(30) == 2.042
    assert 2.021 > t975(50) > 2.000 and t975(10**6) == pytest.approx(1.96, abs=1e-3)


def _configure(dep: Deployment) -> None:
    doc: dict[str, Any] = yaml.safe_load(dep.path.read_text("utf-8"))
    for name in ("annual", "second"):
        doc["campaigns"][name].update(items=ITEMS, comments=["COMMENT"])
    dep.path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")


def _answer(rt: Runtime, ls: FakeLimeSurvey, name: str, answers: list[dict[str, str]]) -> None:
    tids = {p["attribute_1"]: int(p["tid"]) for p in ls.participants(CSID)}
    sent = [m for m in _members(rt, name) if m.state == "sent"]
    for member, values in zip(sent, answers, strict=False):
        ls.answer(CSID, tids[member.correlation_token], values)
    collect_answers(rt, name)


def test_results_report_scores_non_response_and_masked_comments(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
    tmp_path: Path,
) -> None:
    _configure(deployment)
    rt = deployment.open()
    fake.now = rt.now()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    _answer(
        rt,
        fake,
        "annual",
        [
            {"SAT": "6", "CONF": "Y", "COMMENT": "call me on 13812345678 or li.lei@example.com"},
            {"SAT": "7", "CONF": "Y"},
            {"SAT": "8", "CONF": "N", "COMMENT": "fine"},
            {"SAT": "9", "CONF": "Y"},
        ],
    )
    with rt.db.session() as s:
        res = campaign_results(s, "annual")
        again = campaign_results(s, "annual")
        raw = campaign_results(s, "annual", masked=False)
    overall, resolved = res.items
    assert (overall.item, overall.overall.n, overall.overall.value) == ("overall", 4, 7.5)
    assert overall.overall.low == pytest.approx(5.446, abs=1e-3)
    assert (resolved.kind, resolved.overall.value) == ("yes_no", 0.75)
    assert resolved.overall.low == pytest.approx(0.3006, abs=1e-4)
    assert sum(e.n for e in overall.strata.values()) == 4
    assert overall.previous is None and res.previous is None
    # non-response per stratum, from the members themselves
    members = _members(rt, "annual")
    for st in res.strata:
        mine = [m for m in members if m.stratum == st.stratum]
        assert st.size == len(mine)
        assert st.invited == sum(1 for m in mine if m.state == "sent")
        assert st.answered == sum(1 for m in mine if m.responded_at is not None)
        assert st.not_answered == st.invited - st.answered
        assert st.below_target == (st.response_rate is None or st.response_rate < 0.5)
    assert res.answered == 4
    texts = sorted(c.text for c in res.comments)
    assert texts == ["call me on 138****5678 or l***@example.com", "fine"]
    assert "li.lei@example.com" in {c.text.split()[-1] for c in raw.comments}
    # the same stored facts give the same bytes, in every format and language
    for fmt in ("json", "html", "xlsx", "pdf"):
        for lang in ("zh-CN", "en"):
            one = render_results(res, fmt, lang, "Asia/Shanghai")
            assert one == render_results(again, fmt, lang, "Asia/Shanghai")
    page = render_results(res, "html", "zh-CN", "Asia/Shanghai").decode("utf-8")
    assert "满意度调查结果" in page and "138****5678" in page and "13812345678" not in page
    doc = json.loads(render_results(res, "json", "en", "Asia/Shanghai"))
    assert doc["items"][0]["overall"]["value"] == 7.5 and doc["method"] == "t-mean/wilson-95"
    assert render_results(res, "pdf", "en", "Asia/Shanghai").startswith(b"%PDF")


def test_results_compare_with_the_previous_campaign(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    _configure(deployment)
    rt = deployment.open()
    fake.now = rt.now()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    _answer(rt, fake, "annual", [{"SAT": "4", "CONF": "N"}, {"SAT": "6", "CONF": "Y"}])
    deployment.clock.advance(days=1)
    fake.now = deployment.clock.now
    plan_campaign(rt, "second")
    launch_campaign(rt, "second")
    _answer(rt, fake, "second", [{"SAT": "8", "CONF": "Y"}, {"SAT": "9", "CONF": "Y"}])
    with rt.db.session() as s:
        res = campaign_results(s, "second")
    assert res.previous == "annual"
    overall, resolved = res.items
    assert overall.previous is not None and overall.previous.value == 5.0
    assert overall.overall.value == 8.5 and overall.change == 3.5
    assert resolved.change == 0.5


def test_cli_report_writes_the_documents(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main

    _configure(deployment)
    rt = deployment.open()
    fake.now = rt.now()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    out = tmp_path / "out"
    args = ["--config", str(deployment.path)]
    code = main(["campaign", "report", "annual", "--format", "html", "xlsx", "--lang", "en",
                 "--out", str(out), *args])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["qloop-campaign-annual-en.html", "qloop-campaign-annual-en.xlsx"]
    assert main(["campaign", "report", "nope", *args]) == 2
    assert "unknown campaign 'nope'" in capsys.readouterr().err
