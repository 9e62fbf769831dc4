"""Start-up messages are INFO, and long-running commands show them by default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.cli import main
from tests.utils.loop import sandbox_config


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:], root.level = handlers, level


def test_a_worker_says_it_started_at_info_and_shows_it_by_default(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QLOOP_LOG_LEVEL", raising=False)
    path = sandbox_config(
        f"sqlite:///{tmp_path / 'q.db'}", tmp_path, extra={"redis_url": redis_url}
    )
    assert main(["worker", "-c", str(path), "--burst"]) == 0
    err = capsys.readouterr().err
    started = [line for line in err.splitlines() if "qloop.worker: worker " in line]
    assert len(started) == 1 and " INFO " in started[0], err
    assert " WARNING " not in err, err
    assert main(["--log-level", "warning", "worker", "-c", str(path), "--burst"]) == 0
    assert "qloop.worker: worker " not in capsys.readouterr().err


def test_one_shot_commands_log_warnings_only_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QLOOP_LOG_LEVEL", raising=False)
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    assert main(["validate", str(path)]) == 0
    assert logging.getLogger().level == logging.WARNING
    assert main(["--log-level", "debug", "validate", str(path)]) == 0
    assert logging.getLogger().level == logging.DEBUG
