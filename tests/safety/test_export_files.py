"""Export files are whole or absent, bad output folders are clear errors, every export is audited.

``qloop export`` writes each file to a temporary file in the target folder
and renames it at the end: a crash mid-way (full disk, Ctrl-C) leaves the
previous export as it was and no partial or temporary file. A path that is
a file, a folder that cannot be written or whose parent is missing gives one
line on stderr (no traceback) and writes nothing. Each export, from the CLI
or the API, adds an audit entry: who, when, period, format, masked or not.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.cli import main
from core.export import month as export_month_module
from core.store.models import AuditLog
from tests.api.conftest import Served, auth

PERIOD = "2026-10"


def _export(served: Served, out: Path, *extra: str, fmt: str = "csv") -> int:
    argv = ["export", "-c", str(served.deployment.path), "--period", PERIOD]
    return main([*argv, "--format", fmt, "--out", str(out), *extra])


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root writes anywhere but into sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_bad_output_folders_are_one_clear_line_and_write_nothing(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "exports.txt"
    a_file.write_text("keep me", encoding="utf-8")
    missing = tmp_path / "no" / "such" / "folder"
    unwritable = _unwritable(tmp_path)
    before = _tree(unwritable) if unwritable != Path("/sys") else None
    for out, says in (
        (a_file, "is a file, not a folder"),
        (missing, "does not exist, nor does its parent"),
        (unwritable, "writ"),
    ):
        capsys.readouterr()
        assert _export(served, out) == 1
        err = capsys.readouterr().err
        assert err.startswith("qloop: export folder ") and says in err, err
        assert "nothing was written" in err and "Traceback" not in err
    assert a_file.read_text(encoding="utf-8") == "keep me"
    assert not (tmp_path / "no").exists()
    if before is not None:
        assert _tree(unwritable) == before


def test_a_missing_folder_whose_parent_exists_is_created(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    assert _export(served, out) == 0
    assert sorted(_tree(out)) == [
        f"qloop-{PERIOD}-default-indicators.csv",
        f"qloop-{PERIOD}-default-nonconformities.csv",
        f"qloop-{PERIOD}-default.csv",
    ]


def _failing_batches(after: int, exc: BaseException) -> Any:
    """export_columns raising ``exc`` once ``after`` batches were read (the writer has
    started the file)."""
    real = export_month_module.export_columns

    def batches(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with contextlib.closing(real(*args, **kwargs)) as it:
            for n, batch in enumerate(it):
                yield batch
                if n + 1 == after:
                    raise exc

    return batches


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl"])
@pytest.mark.parametrize(
    ("exc", "status"),
    [(OSError(errno.ENOSPC, "No space left on device"), 1), (KeyboardInterrupt(), 130)],
)
def test_a_crash_mid_export_leaves_the_previous_files_and_no_partial_one(
    served: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    exc: BaseException,
    status: int,
) -> None:
    out = tmp_path / "exports"
    assert _export(served, out, fmt=fmt) == 0
    before = _tree(out)
    assert before
    with served.rt.db.session() as s:
        audits = len(list(s.scalars(select(AuditLog).where(AuditLog.action == "export"))))
    monkeypatch.setattr(export_month_module, "export_columns", _failing_batches(1, exc))
    capsys.readouterr()
    assert _export(served, out, "--unmask", fmt=fmt) == status
    assert _tree(out) == before  # no partial file, no temporary file, old files intact
    if status == 1:
        assert "No space left on device" in capsys.readouterr().err
    with served.rt.db.session() as s:  # a failed export is no export: not audited
        assert len(list(s.scalars(select(AuditLog).where(AuditLog.action == "export")))) == audits


def test_cli_and_api_exports_are_audit_logged(served: Served, tmp_path: Path) -> None:
    assert _export(served, tmp_path / "masked", fmt="xlsx") == 0
    assert _export(served, tmp_path / "raw", "--unmask") == 0
    assert served.client.get(f"/exports/{PERIOD}", headers=auth("qa-read")).status_code == 200
    r = served.client.get(f"/exports/{PERIOD}", params={"format": "jsonl"}, headers=auth("admin"))
    assert r.status_code == 200
    with served.rt.db.session() as s:
        rows = list(
            s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id))
        )
    got = [(a.actor, a.entity_id, a.detail["format"], a.detail["masked"]) for a in rows]
    cli = rows[0].actor
    assert cli.startswith("cli:")
    assert got == [
        (cli, PERIOD, "xlsx", True),
        (cli, PERIOD, "csv", False),
        ("qa-read-user", PERIOD, "csv", True),
        ("admin-user", PERIOD, "jsonl", False),
    ]
    assert all(a.at is not None and a.detail["policies"] == ["default"] for a in rows)
    assert rows[0].detail["files"] == [str(tmp_path / "masked" / f"qloop-{PERIOD}-default.xlsx")]
    assert [a.detail["via"] for a in rows] == ["cli", "cli", "api", "api"]
