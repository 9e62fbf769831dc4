"""``qloop sources`` / ``qloop channels``: status listing and access checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main
from tests.utils.loop import sandbox_config


def test_sources_test_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=30)
    assert main(["sources", "list", "-c", str(path)]) == 0
    assert "never synced" in capsys.readouterr().out
    assert main(["sources", "test", "itsm", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "itsm: OK" in out and "30 generated incidents" in out
    assert main(["run", "-c", str(path), "-q"]) == 0
    capsys.readouterr()
    assert main(["sources", "list", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "last success" in out and "never synced" not in out


def test_unknown_names_and_connectors_without_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=10)
    assert main(["sources", "test", "nope", "-c", str(path)]) == 2
    assert "unknown source 'nope'; known: itsm" in capsys.readouterr().err
    assert main(["sources", "test", "-c", str(path)]) == 1
    assert "needs the source's name" in capsys.readouterr().err
    assert main(["channels", "test", "phone", "-c", str(path)]) == 0
    assert "has no access check" in capsys.readouterr().out
