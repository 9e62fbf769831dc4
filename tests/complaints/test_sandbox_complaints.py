"""Complaints in the sandbox (issue 12 item 2): flagged by its ITSM, root causes written by
its team, called back by its phone channel, and in the complaint report and its files.

The sandbox labels about 3% of incidents ``complaint``; its team writes
"Root cause:" once it works a complaint's ticket and "Rectification:" once
it resolves it, and closes every complaint ticket. Embedded (SQLite) and
PostgreSQL.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from api.cli import main
from connectors.sandbox.source import ROOT_CAUSES
from core.complaints.report import complaint_document, render_complaints
from core.loop import run_once
from core.runtime import Runtime
from core.store.models import Complaint, Incident
from core.timeutil import month_bounds
from tests.utils.loop import Deployment, sandbox_config

CAUSES = {cause.removeprefix("Root cause:").strip() for cause, _ in ROOT_CAUSES}
FIXES = {fix.removeprefix("Rectification:").strip() for _, fix in ROOT_CAUSES}


@pytest.fixture
def looped(database_url: str, tmp_path: Path) -> Iterator[tuple[Deployment, Runtime]]:
    path = sandbox_config(
        database_url, tmp_path, incidents=120, extra={"complaints": {"deadline": "3bd"}}
    )
    dep = Deployment(path)
    rt = dep.open()
    for _ in range(4):
        assert run_once(rt).errors == []
        dep.clock.advance(hours=6)
    yield dep, rt
    dep.close()


def test_a_sandbox_complaint_goes_from_its_label_to_the_follow_up_call(
    looped: tuple[Deployment, Runtime],
) -> None:
    _, rt = looped
    with rt.db.session() as s:
        rows = s.execute(select(Complaint, Incident).join(Incident)).all()
    assert rows
    flagged = [(c, inc) for c, inc in rows if c.origin == "source"]
    assert flagged, "the sandbox labels some incidents 'complaint'"
    for c, inc in flagged:
        assert "complaint" in inc.raw["fields"]["labels"]
        assert c.ticket_ref is not None and c.ticket_ref.startswith("SBX-QA-")
    done = [c for c, _ in rows if c.state == "followed_up"]
    assert done, "at least one complaint is called back"
    for c in done:
        assert c.root_cause in CAUSES and c.rectification in FIXES
        assert c.received_at <= c.acknowledged_at <= c.closed_at  # type: ignore[operator]
        assert c.closed_at <= c.follow_up_reached_at  # type: ignore[operator]
    assert len({c.incident_id for c, _ in rows}) == len(rows)  # one complaint per incident
    source = rt.source("itsm")
    notes = source.ticket_notes(done[0].ticket_ref)  # type: ignore[attr-defined]
    assert any(n.text.startswith("Root cause:") for n in notes)


def test_the_complaint_report_in_every_format_and_language(
    looped: tuple[Deployment, Runtime], tmp_path: Path
) -> None:
    dep, rt = looped
    with rt.db.session() as s:
        doc = complaint_document(s, "2026-10", "Asia/Shanghai", as_of=dep.clock.now)
        start, end = month_bounds("2026-10", ZoneInfo("Asia/Shanghai"))
        received = s.scalars(
            select(Complaint)
            .where(Complaint.received_at >= start, Complaint.received_at < end)
            .order_by(Complaint.received_at, Complaint.id)
        ).all()
    rep = doc.report
    assert rep.counts["total"] == len(received) > 0
    assert sum(rep.counts[k] for k in rep.counts if k.startswith("state.")) == len(received)
    assert rep.medians["acknowledged_at"] is not None
    data = json.loads(render_complaints(doc, "json", "en"))
    assert data["counts"]["total"] == len(received)
    assert {c["key"] for c in data["complaints"]} == {c.key for c in received}
    first = data["complaints"][0]
    assert {"received_at", "acknowledged_at", "root_cause_at", "rectified_at"} <= set(first)
    assert "follow_up_reached_at" in first and "state" in first
    html_zh = render_complaints(doc, "html", "zh-CN").decode("utf-8")
    assert "投诉报告 2026-10" in html_zh
    assert all(c.ticket_ref in html_zh for c in received if c.ticket_ref)
    assert "Complaint report" in render_complaints(doc, "html", "en").decode("utf-8")
    assert render_complaints(doc, "pdf", "zh-CN").startswith(b"%PDF")
    book = zipfile.ZipFile(BytesIO(render_complaints(doc, "xlsx", "en")))
    assert any(n.startswith("xl/worksheets/") for n in book.namelist())

    out = tmp_path / "out"
    args = ["complaints", "report", "-c", str(dep.path), "--period", "2026-10"]
    assert main([*args, "--format", "json", "--format", "html", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "qloop-complaints-2026-10.html",
        "qloop-complaints-2026-10.json",
    ]
    assert main([*args, "--period", "2026-13", "--out", str(out)]) != 0
