"""A worker reads its config once: its work horses reuse it while the file is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.conf import AppConfig
from core.errors import ConfigError
from tests.utils.loop import sandbox_config
from workers import jobs


def test_a_prepared_config_is_reused_until_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    key = str(path.resolve())
    monkeypatch.setattr(jobs, "_PREPARED", {})
    jobs.prepare(path)
    prepared = jobs._PREPARED[key][1]
    loads: list[Path] = []
    plain = jobs.load_config

    def counted(p: Path) -> AppConfig:
        loads.append(p)
        return plain(p)

    monkeypatch.setattr(jobs, "load_config", counted)
    assert jobs._config(key) is prepared  # unchanged: not read again
    assert loads == []

    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("page_size: 25", "page_size: 30"), encoding="utf-8")
    changed = jobs._config(key)  # a changed file is read again
    assert loads == [Path(key)]
    assert changed is not prepared
    assert changed.sources["itsm"].options["page_size"] == 30

    st = path.stat()  # same size, later modification time: read again too
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert jobs._config(key) is not prepared
    assert len(loads) == 2


def test_an_unprepared_or_missing_config_is_read_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)
    monkeypatch.setattr(jobs, "_PREPARED", {})
    assert jobs._config(str(path.resolve())).sources  # nothing prepared: read
    jobs.prepare(path)
    path.unlink()
    with pytest.raises(ConfigError, match=r"qloop\.yaml"):
        jobs._config(str(path.resolve()))  # gone: not served from memory
