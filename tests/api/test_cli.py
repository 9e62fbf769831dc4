"""The qloop command as a user runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import create_engine, func, select

from api.cli import main
from core.conf import load_config
from core.runtime import open_runtime
from core.store.models import Incident, JobLease, OutboxItem
from tests.utils.loop import sandbox_config
from workers import guard


def test_validate_points_at_the_broken_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    lines = good.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if line.strip().startswith("P3: 4h"))
    lines[idx] = lines[idx].replace("4h", "four hours")
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"bad.yaml:{idx + 1}:" in err
    assert "policies.default.response.P3" in err


def test_validate_show_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QLOOP_TEST_DB_PASSWORD", "s3cr3t-pw")
    path = sandbox_config("postgresql://qloop:${QLOOP_TEST_DB_PASSWORD}@db/qloop", tmp_path)
    assert main(["validate", str(path), "--show"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "s3cr3t-pw" not in out


def test_run_twice_sends_nothing_new_then_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "q.db"
    path = sandbox_config(f"sqlite:///{db}", tmp_path, incidents=40)
    assert main(["run", "-c", str(path), "--cycles", "2", "-q"]) == 0
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(OutboxItem)).scalar()
    assert main(["run", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sent_" not in out
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxItem)).scalar() == before
    engine.dispose()
    assert (
        main(
            [
                "export",
                "-c",
                str(path),
                "--period",
                "2026-10",
                "--format",
                "csv",
                "--out",
                str(tmp_path / "exp"),
            ]
        )
        == 0
    )
    assert (tmp_path / "exp" / "qloop-2026-10-default.csv").stat().st_size > 0
    assert main(["export", "-c", str(path), "--period", "2026-13"]) == 1


def test_outbox_and_review_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=20)
    assert main(["run", "-c", str(path), "-q"]) == 0
    assert main(["outbox", "list", "-c", str(path)]) == 0
    assert "outbox: " in capsys.readouterr().out
    assert main(["review", "list", "-c", str(path)]) == 0
    assert "waiting for review" in capsys.readouterr().out
    assert main(["review", "match", "999", "-c", str(path), "--incident", "1"]) == 1


def test_demo_runs_a_month_and_writes_exports_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--dir", str(workdir), "--incidents", "60"]) == 0
    out = capsys.readouterr().out
    assert "callback coverage" in out and "Nonconformities" in out
    for name in (
        "qloop-2026-10-default.csv",
        "qloop-2026-10-default.xlsx",
        "qloop-2026-10-default.jsonl",
    ):
        assert (workdir / "exports" / name).exists()
    # the last step: the month's zh-CN report, HTML and PDF, and where they are
    reports = workdir / "reports"
    html, pdf = (
        reports / "qloop-report-2026-10-default.html",
        reports / "qloop-report-2026-10-default.pdf",
    )
    campaign = [
        reports / "qloop-campaign-annual-zh-CN.html",
        reports / "qloop-campaign-annual-zh-CN.pdf",
    ]
    complaints = [reports / f"qloop-complaints-2026-10.{f}" for f in ("html", "pdf")]
    assert sorted(reports.iterdir()) == sorted([html, pdf, *campaign, *complaints])
    story = out[out.index("One complaint, SBX-") : out.index("Complaint report (zh-CN)")]
    assert " received " in story and " ticketed " in story  # one complaint's history
    assert "投诉报告 2026-10" in complaints[0].read_text(encoding="utf-8")
    tail = out[out.index("Monthly quality report (zh-CN):") :]
    assert f"  {html}" in tail and f"  {pdf}" in tail
    # one survey campaign end to end: some answer, some after a reminder, some never
    steps = out[out.index("Survey campaign annual") :]
    assert "invitation(s) sent" in steps and "reminder(s) to the others" in steps
    assert f"    {campaign[0]}" in steps
    results = campaign[0].read_text(encoding="utf-8")
    assert "满意度调查结果" in results and "Wilson" in results
    page = html.read_text(encoding="utf-8")
    assert "质量月报" in page and "2026-10" in page and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/", "")  # self-contained
    text = PdfReader(pdf).pages[0].extract_text()
    assert "质量月报2026-10" in "".join(text.replace("\x00", "").split())


def test_run_refuses_while_another_process_runs_a_job_of_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=10)
    rt = open_runtime(load_config(path))
    try:
        with guard.lease(rt.db, "dispatch", "worker-on-host-b") as held_by:
            assert held_by is None
            assert main(["run", "-c", str(path), "-q"]) != 0
            err = capsys.readouterr().err
            assert "running elsewhere on this store: dispatch (worker-on-host-b)" in err
            with rt.db.session() as s:  # nothing was pulled, and no lease is left behind
                assert s.scalar(select(func.count()).select_from(Incident)) == 0
                assert [k.key for k in s.scalars(select(JobLease))] == ["dispatch"]
        assert main(["run", "-c", str(path), "-q"]) == 0  # free again: the loop runs
        with rt.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Incident)) == 10
            assert s.scalar(select(func.count()).select_from(JobLease)) == 0
    finally:
        rt.close()


def test_demo_leaves_what_qloop_serve_needs_for_the_qa_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    import stat
    import warnings

    from api.app import create_app
    from api.demo_serve import QA_VAR, read_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    workdir = tmp_path / "demo"
    assert main(["demo", "--dir", str(workdir), "--incidents", "30"]) == 0
    out = capsys.readouterr().out
    env_file, cfg = workdir / "serve.env", workdir / "serve.yaml"
    assert f". {env_file.resolve()}" in out and f"qloop serve -c {cfg.resolve()}" in out
    assert "http://127.0.0.1:8000/qa" in out
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = read_env(env_file)
    assert env[QA_VAR] not in out  # the token is in the file, never printed
    app = create_app(load_config(cfg, env={**os.environ, **env}))
    with TestClient(app, follow_redirects=False) as client:
        form = client.get("/qa/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        r = client.post("/qa/signin", data={"csrf": csrf, "token": env[QA_VAR]})
        assert r.status_code == 303
        page = client.get("/qa", params={"month": "2026-10"})
        assert page.status_code == 200 and "demo-qa-read" in page.text
        assert 'id="resolved-default">' in page.text
