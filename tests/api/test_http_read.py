"""Read endpoints over a sandbox month: sources, incidents, answers, NCs, report, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.export import period_indicators
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Nonconformity,
    Response,
    SyncRun,
)
from tests.api.conftest import Served, auth


def _all_pages(served: Served, url: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        body = served.client.get(url, params=query, headers=auth("admin")).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def _count(served: Served, model: Any, *where: Any) -> int:
    with served.rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_sources_and_channels_show_sync_status(served: Served) -> None:
    sources = served.client.get("/sources", headers=auth("operator")).json()
    assert [s["name"] for s in sources] == ["itsm"]
    itsm = sources[0]
    assert itsm["type"] == "sandbox" and itsm["policy"] == "default"
    assert itsm["cursor"] and itsm["last_error"] is None
    assert itsm["last_run"]["status"] == "ok" and itsm["last_run"]["kind"] == "pull"
    channels = {
        c["name"]: c for c in served.client.get("/channels", headers=auth("qa-read")).json()
    }
    assert set(channels) == {"phone", "survey-mail", "survey-phone", "hook"}
    assert channels["hook"]["receives_webhooks"] is True
    assert channels["phone"]["receives_webhooks"] is False
    assert channels["phone"]["last_run"]["kind"] == "collect"


def test_incidents_page_through_everything_once(served: Served) -> None:
    items = _all_pages(served, "/incidents")
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == _count(served, Incident)
    p2 = _all_pages(served, "/incidents", priority="P2")
    assert p2 and all(i["priority"] == "P2" for i in p2)
    assert len(p2) == _count(served, Incident, Incident.priority == "P2")
    resolved = _all_pages(served, "/incidents", category="closed")
    assert all(i["category"] == "closed" for i in resolved)
    october = _all_pages(served, "/incidents", month="2026-10")
    assert october and len(october) <= len(items)
    assert _all_pages(served, "/incidents", month="2025-01") == []
    key = items[3]["key"]
    assert [i["key"] for i in _all_pages(served, "/incidents", key=key)] == [key]


def test_incident_detail_tells_its_whole_story(served: Served) -> None:
    with served.rt.db.session() as s:
        inc_id = s.scalar(select(Nonconformity.incident_id).order_by(Nonconformity.id).limit(1))
    body = served.client.get(f"/incidents/{inc_id}", headers=auth("admin")).json()
    assert body["id"] == inc_id
    assert [e["seq"] for e in body["status_history"]] == sorted(
        e["seq"] for e in body["status_history"]
    )
    assert body["status_history"] and body["callbacks"] and body["compliance"]
    assert body["nonconformities"] and all(
        n["incident_id"] == inc_id for n in body["nonconformities"]
    )
    assert body["compliance"][0]["policy"] == "default"
    assert isinstance(body["raw"], dict)
    for resp in body["responses"]:
        assert resp["match"]["incident_id"] == inc_id


def test_callbacks_responses_and_nonconformities_filter(served: Served) -> None:
    callbacks = _all_pages(served, "/callbacks", channel="phone")
    assert len(callbacks) == _count(served, CallbackTask, CallbackTask.channel == "phone") > 0
    answers = _all_pages(served, "/responses", kind="survey_answer")
    assert all(r["kind"] == "survey_answer" for r in answers)
    assert len(answers) == _count(served, Response, Response.kind == "survey_answer")
    matched = _all_pages(served, "/responses", matched="true")
    assert matched and all(r["match"]["status"] == "matched" for r in matched)
    ncs = _all_pages(served, "/nonconformities", month="2026-10")
    with served.rt.db.session() as s:
        october = set(
            s.scalars(
                select(Nonconformity.id)
                .join(ComplianceRecord, ComplianceRecord.incident_id == Nonconformity.incident_id)
                .where(ComplianceRecord.month == "2026-10")
            )
        )
    assert {n["id"] for n in ncs} == october and october
    major = _all_pages(served, "/nonconformities", severity="major")
    assert all(n["severity"] == "major" for n in major)
    # rules, severities and states are enums in the OpenAPI document: an unknown one is a 422
    unknown = served.client.get(
        "/nonconformities", params={"rule": "no-such-rule"}, headers=auth("admin")
    )
    assert unknown.status_code == 422 and "query.rule" in unknown.json()["detail"]


def test_monthly_report_is_the_stored_indicators(served: Served) -> None:
    body = served.client.get("/reports/2026-10", headers=auth("qa-read")).json()
    assert body["period"] == "2026-10" and body["timezone"] == "Asia/Shanghai"
    [report] = body["policies"]
    pol = served.rt.policy("default")
    with served.rt.db.session() as s:
        expected = period_indicators(
            s,
            policy="default",
            version=pol.version,
            month="2026-10",
            now=served.rt.now(),
            rules=pol,
        ).as_dict()
    assert report["version"] == pol.version
    assert report["indicators"] == expected


def test_health_ready_and_metrics_read_the_store(served: Served) -> None:
    assert served.client.get("/health").json() == {"status": "ok"}
    ready = served.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    text = served.client.get("/metrics").text
    pulls = _count(served, SyncRun, SyncRun.connector == "itsm", SyncRun.status == "ok")
    assert f'qloop_sync_runs_total{{connector="itsm",kind="pull",status="ok"}} {pulls}.0' in text
    assert "qloop_outbox_items{" in text and 'state="sent"' in text
    answers = _count(served, Response, Response.channel == "phone")
    assert f'qloop_responses_total{{channel="phone",kind="callback_attempt"}} {answers}.0' in text
    assert "qloop_review_queue_size " in text
    assert "qloop_store_up 1.0" in text


def test_errors_are_problem_details(served: Served) -> None:
    missing = served.client.get("/incidents/999999", headers=auth("admin"))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    body = missing.json()
    assert body["type"].endswith("/not-found") and body["status"] == 404
    assert body["title"] and "999999" in body["detail"]
    bad = served.client.get(
        "/incidents", params={"limit": 0, "month": "2026-13"}, headers=auth("admin")
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    paths = {e["path"] for e in bad.json()["errors"]}
    assert paths == {"query.limit", "query.month"}


def test_qloop_serve_is_a_cli_command() -> None:
    from api.cli import build_parser
    from api.cli_serve import cmd_serve

    args = build_parser().parse_args(["serve", "-c", "x.yaml", "--port", "9001"])
    assert args.func is cmd_serve
    assert (args.config, args.host, args.port) == ("x.yaml", "127.0.0.1", 9001)
    assert args.no_access_log is False


def test_qloop_serve_can_leave_out_the_access_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from api.cli import build_parser
    from api.cli_serve import cmd_serve

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    monkeypatch.setattr("api.app.create_app", lambda path: object())
    for argv, env in (([], ""), (["--no-access-log"], ""), ([], "off"), ([], "1")):
        monkeypatch.setenv("QLOOP_ACCESS_LOG", env)
        args = build_parser().parse_args(["serve", "-c", str(tmp_path / "x.yaml"), *argv])
        assert cmd_serve(args) == 0
    assert [kw["access_log"] for kw in served] == [True, False, False, True]
