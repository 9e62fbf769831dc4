"""``qloop report`` (issue 11 item 2): files written, identical bytes for the same as_of."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.cli import main
from core.loop import run_once
from tests.report.world import AS_OF, PERIOD
from tests.utils.loop import Deployment


def _run(dep: Deployment, out: Path, *extra: str) -> dict[str, bytes]:
    args = ["report", "-c", str(dep.path), "--period", PERIOD, "--out", str(out), *extra]
    assert main(args) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_report_twice_gives_identical_files(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_once(deployment.open())
    fmts = [a for f in ("html", "pdf", "xlsx", "json") for a in ("--format", f)]
    one = _run(deployment, tmp_path / "1", "--as-of", AS_OF, *fmts)
    assert "as_of: 2026-11-04T16:00:00+00:00" in capsys.readouterr().out
    deployment.clock.advance(days=1)
    run_once(deployment.open())
    two = _run(deployment, tmp_path / "2", "--as-of", AS_OF, *fmts)
    assert sorted(one) == [f"qloop-report-2026-10-all.{f}" for f in ("html", "json", "pdf", "xlsx")]
    assert one == two
    assert "质量月报" in one["qloop-report-2026-10-all.html"].decode("utf-8")


def test_report_defaults_to_now_html_and_pdf(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_once(deployment.open())
    files = _run(deployment, tmp_path / "o", "--lang", "en")
    assert sorted(files) == ["qloop-report-2026-10-all.html", "qloop-report-2026-10-all.pdf"]
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"as_of: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first)
    assert b"Monthly quality report" in files["qloop-report-2026-10-all.html"]
