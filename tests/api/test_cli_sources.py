"""``qloop sources`` / ``qloop channels``: status listing and access checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.cli import main
from core.conf import load_config
from core.runtime import open_runtime
from core.store.models import OutboxItem, SourceState
from tests.utils.loop import sandbox_config
from workers import guard


def test_sources_test_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=30)
    assert main(["sources", "list", "-c", str(path)]) == 1  # read-only: creates no store
    assert "run `qloop run` first" in capsys.readouterr().err
    assert main(["sources", "test", "itsm", "-c", str(path)]) == 0  # needs no store
    out = capsys.readouterr().out
    assert "itsm: OK" in out and "30 generated incidents" in out
    assert not (tmp_path / "q.db").exists()
    assert main(["run", "-c", str(path), "-q"]) == 0
    assert main(["channels", "list", "-c", str(path)]) == 0
    assert "never synced" not in capsys.readouterr().out
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


def test_resync_clears_the_cursor_unless_a_sync_holds_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=10)
    assert main(["run", "-c", str(path), "-q"]) == 0
    rt = open_runtime(load_config(path))
    try:
        with guard.lease(rt.db, "sync:itsm", "another-worker") as held_by:
            assert held_by is None
            assert main(["sources", "resync", "itsm", "-c", str(path)]) != 0
            assert "a sync of itsm is running (another-worker)" in capsys.readouterr().err
        with rt.db.session() as s:
            assert s.get(SourceState, "itsm").cursor is not None  # type: ignore[union-attr]
        assert main(["sources", "resync", "itsm", "-c", str(path)]) == 0
        assert "cursor cleared" in capsys.readouterr().out
        with rt.db.session() as s:
            assert s.get(SourceState, "itsm").cursor is None  # type: ignore[union-attr]
        assert main(["sources", "resync", "-c", str(path)]) != 0
        assert "needs the source's name" in capsys.readouterr().err
        assert main(["sources", "resync", "nope", "-c", str(path)]) == 2
        assert "unknown source 'nope'" in capsys.readouterr().err
        with rt.db.session() as s:
            before = s.scalar(select(func.count()).select_from(OutboxItem))
        assert main(["run", "-c", str(path), "-q"]) == 0  # re-reads all…
        with rt.db.session() as s:  # …and plans nothing new
            assert s.scalar(select(func.count()).select_from(OutboxItem)) == before
    finally:
        rt.close()
