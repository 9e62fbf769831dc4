"""Survey campaigns over HTTP (issue 12 item 1): admin plans/launches/closes, qa-read reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import connectors.limesurvey  # noqa: F401  (registers the limesurvey channel type)
from core.campaign.results import campaign_results
from core.loop.pull import pull
from core.report.campaign import render_results
from core.store.models import AuditLog, CampaignMember
from tests.api.conftest import Served, api_config, auth, serve_month
from tests.fakes.limesurvey import ENDPOINT, FakeLimeSurvey
from tests.fakes.server import serve

SID, CSID = 246135, 777001


@pytest.fixture
def fake() -> FakeLimeSurvey:
    ls = FakeLimeSurvey(max_emails=5)
    for sid in (SID, CSID):
        ls.add_survey(sid, ["attribute_1", "attribute_2", "attribute_3"])
    return ls


@pytest.fixture
def served(database_url: str, tmp_path: Path, fake: FakeLimeSurvey) -> Iterator[Served]:
    with serve(fake.app) as url:
        path = api_config(database_url, tmp_path, incidents=30)
        doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
        doc["channels"]["survey-ls"] = {
            "type": "limesurvey",
            "url": url + ENDPOINT,
            "username": "qloop",
            "password": "s3cret-pass",
            "survey_id": SID,
            "key_attribute": "attribute_3",
        }
        doc["campaigns"] = {
            "annual": {
                "window": {"from": "2026-10-01", "to": "2026-10-31"},
                "channel": "survey-ls",
                "survey_id": CSID,
                "strata": ["priority"],
                "rate": 0.5,
                "items": {"overall": {"question": "SAT", "scale": [0, 10]}},
                "comments": ["COMMENT"],
            }
        }
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
        for s in serve_month(path, loop=False):
            pull(s.rt, "itsm")
            fake.now = s.rt.now()
            yield s


def test_admin_runs_a_campaign_and_others_may_only_read(served: Served) -> None:
    c = served.client
    listed = c.get("/campaigns", headers=auth("qa-read")).json()
    assert [(x["name"], x["state"], x["configured"]) for x in listed] == [
        ("annual", "not_planned", True)
    ]
    early = c.get("/campaigns/annual/report", headers=auth("qa-read"))
    assert early.status_code == 409 and "no plan yet" in early.json()["detail"]
    for role in ("qa-read", "operator"):
        r = c.post("/campaigns/annual/plan", headers=auth(role))
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    planned = c.post("/campaigns/annual/plan", headers=auth("admin"))
    assert planned.status_code == 200, planned.text
    assert planned.json()["state"] == "planned" and planned.json()["picked"] > 0
    launched = c.post("/campaigns/annual/launch", headers=auth("admin")).json()
    with served.rt.db.session() as s:
        sent = s.scalars(select(CampaignMember).where(CampaignMember.state == "sent")).all()
    assert launched["enqueued"] == len(sent) > 0
    assert c.post("/campaigns/annual/launch", headers=auth("admin")).json()["enqueued"] == 0
    status = c.get("/campaigns/annual", headers=auth("qa-read")).json()
    assert status["invited"] == len(sent) and status["answered"] == 0
    assert all(st["below_target"] for st in status["strata"])
    missing = c.get("/campaigns/nope", headers=auth("qa-read"))
    assert missing.status_code == 404 and "unknown campaign" in missing.json()["detail"]
    assert c.post("/campaigns/annual/close", headers=auth("admin")).status_code == 200
    again = c.post("/campaigns/annual/launch", headers=auth("admin"))
    assert again.status_code == 409 and "closed" in again.json()["detail"]


def test_qa_read_downloads_the_results_report_masked(served: Served, fake: FakeLimeSurvey) -> None:
    c = served.client
    c.post("/campaigns/annual/plan", headers=auth("admin"))
    c.post("/campaigns/annual/launch", headers=auth("admin"))
    part = fake.participants(CSID)[0]
    fake.answer(CSID, int(part["tid"]), {"SAT": "9", "COMMENT": "mail me at wang@example.com"})
    status = c.get("/campaigns/annual", params={"refresh": "true"}, headers=auth("qa-read"))
    assert status.json()["answered"] == 1
    r = c.get("/campaigns/annual/report", params={"format": "html", "lang": "en"},
              headers=auth("qa-read"))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        'attachment; filename="qloop-campaign-annual-en.html"'
    )
    assert "w***@example.com" in r.text and "wang@example.com" not in r.text
    with served.rt.db.session() as s:
        expected = render_results(campaign_results(s, "annual"), "html", "en", "Asia/Shanghai")
        audits = s.scalars(select(AuditLog).where(AuditLog.action == "campaign.report")).all()
    assert r.content == expected
    assert [(a.actor, a.detail["masked"]) for a in audits] == [("qa-read-user", True)]
    admin = c.get("/campaigns/annual/report", params={"format": "json"}, headers=auth("admin"))
    assert admin.json()["comments"][0]["text"] == "mail me at wang@example.com"
    bad = c.get("/campaigns/annual/report", params={"format": "doc"}, headers=auth("qa-read"))
    assert bad.status_code == 422
