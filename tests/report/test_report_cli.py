"""``qloop report`` (issue 11 item 2): files written, identical bytes for the same as_of."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from api.cli import main
from core.loop import run_once
from tests.report.world import AS_OF, PERIOD, build_world
from tests.utils.fixture_connectors import register_fixture_types
from tests.utils.loop import Deployment, fixture_config


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
    assert sorted(one) == [
        f"qloop-report-2026-10-default.{f}" for f in ("html", "json", "pdf", "xlsx")
    ]
    assert one == two
    assert "质量月报" in one["qloop-report-2026-10-default.html"].decode("utf-8")


def test_report_defaults_to_now_html_and_pdf(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_once(deployment.open())
    files = _run(deployment, tmp_path / "o", "--lang", "en")
    assert sorted(files) == [
        "qloop-report-2026-10-default.html",
        "qloop-report-2026-10-default.pdf",
    ]
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"as_of: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first)
    assert b"Monthly quality report" in files["qloop-report-2026-10-default.html"]


def test_file_names_say_all_only_for_several_policies(tmp_path: Path) -> None:
    register_fixture_types()
    build_world()
    base = yaml.safe_load(
        fixture_config("sqlite:///" + str(tmp_path / "q.db"), tmp_path).read_text()
    )
    policies = {"default": base["policies"]["default"], "strict": base["policies"]["default"]}
    dep = Deployment(fixture_config(base["database_url"], tmp_path, {"policies": policies}))
    try:
        run_once(dep.open())
        both = _run(dep, tmp_path / "both", "--as-of", AS_OF, "--format", "json")
        assert list(both) == ["qloop-report-2026-10-all.json"]
        one = _run(
            dep, tmp_path / "one", "--as-of", AS_OF, "--format", "json", "--policy", "strict"
        )
        assert list(one) == ["qloop-report-2026-10-strict.json"]
    finally:
        dep.close()
