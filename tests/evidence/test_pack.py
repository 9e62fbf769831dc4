"""The audit evidence pack: verifies, names tampering, same bytes, flat memory (issue 11 item 4)."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.cli import main
from core.evidence import build_pack, verify_pack, write_pack
from core.runtime import Runtime
from core.store.models import AuditLog
from tests.utils.loop import Deployment

AS_OF = datetime(2026, 11, 20, tzinfo=UTC)


def _rewrite(src: Path, dst: Path, *, change: str = "", drop: str = "", add: str = "") -> None:
    """Copy the pack, altering one entry's bytes, leaving one out, or adding one."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == change:
                data = data.replace(b",", b";", 1)
            zout.writestr(info.filename, data)
        if add:
            zout.writestr(add, b"not in the manifest\n")


def test_pack_verifies_and_names_every_tampered_file(
    loaded: Runtime, deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pack.zip"
    sha = write_pack(loaded, "2026-08", "2026-10", AS_OF, out, actor="cli:test")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = zf.read("manifest.json")
        listed = [f["name"] for f in json.loads(manifest)["files"]]
        ncs = [json.loads(line) for line in zf.read("nonconformities.jsonl").splitlines()]
        config = json.loads(zf.read("config.json"))
    assert sha == hashlib.sha256(manifest).hexdigest()
    assert listed == sorted(listed) and set(listed) == set(names) - {"manifest.json"}
    for month in ("2026-08", "2026-09", "2026-10"):
        assert f"export/{month}/qloop-{month}-default.csv" in names
        for fmt in ("html", "pdf"):
            assert f"reports/{month}/qloop-report-{month}-default.{fmt}" in names
    assert {"policies.json", "versions.json", "review-decisions.jsonl", "pack.json"} <= set(names)
    assert ncs and all(nc["history"] and nc["ticket"]["target"] for nc in ncs)
    assert config["database_url"]  # the config in force, with secrets masked by the loader's rule
    with loaded.db.session() as s:
        entry = s.query(AuditLog).filter_by(action="evidence").one()
        assert entry.detail["manifest_sha256"] == sha and entry.actor == "cli:test"

    assert verify_pack(out).ok
    config_path = str(deployment.path)
    assert main(["evidence", "verify", str(out)]) == 0
    assert sha in capsys.readouterr().out

    export = "export/2026-09/qloop-2026-09-default.csv"
    for kind, kwargs in (
        ("changed", {"change": export}),
        ("missing", {"drop": "policies.json"}),
        ("extra", {"add": "notes.txt"}),
    ):
        bad = tmp_path / f"{kind}.zip"
        _rewrite(out, bad, **kwargs)
        result = verify_pack(bad)
        named = next(iter(kwargs.values()))
        assert getattr(result, kind) == [named], kind
        assert main(["evidence", "verify", str(bad)]) == 1
        assert f"{kind}: {named}" in capsys.readouterr().err
    assert config_path  # the verifier needs no config


def test_same_facts_and_as_of_give_the_same_bytes(loaded: Runtime, deployment: Deployment) -> None:
    first = b"".join(build_pack(loaded, "2026-09", "2026-10", AS_OF))
    deployment.clock.advance(days=3)  # a later run, nothing new stored
    second = b"".join(build_pack(loaded, "2026-09", "2026-10", AS_OF))
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert {info.date_time for info in zf.infolist()} == {(2026, 11, 20, 0, 0, 0)}
    earlier = b"".join(build_pack(loaded, "2026-09", "2026-10", datetime(2026, 11, 1, tzinfo=UTC)))
    assert earlier != first


def test_reports_are_the_months_reports_as_of_the_pack(loaded: Runtime, tmp_path: Path) -> None:
    """Each month's HTML and PDF are the bytes ``qloop report`` writes at the same ``as_of``."""
    from core.report import build_report, render_report

    data = b"".join(build_pack(loaded, "2026-09", "2026-10", AS_OF))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        reports = {n: zf.read(n) for n in names if n.startswith("reports/")}
        pack = json.loads(zf.read("pack.json"))
    assert names.index("policies.json") < names.index(
        "reports/2026-09/qloop-report-2026-09-default.html"
    )
    assert names.index("reports/2026-10/qloop-report-2026-10-default.pdf") < names.index(
        "review-decisions.jsonl"
    )
    assert len(reports) == 4 and pack["report_lang"] is None
    for month in ("2026-09", "2026-10"):
        report = build_report(loaded, month, as_of=AS_OF)
        assert report.default_lang == "zh-CN"  # the sandbox's CN calendar
        html = reports[f"reports/{month}/qloop-report-{month}-default.html"]
        pdf = reports[f"reports/{month}/qloop-report-{month}-default.pdf"]
        assert html == render_report(report, "html")
        assert pdf.startswith(b"%PDF") and pdf == render_report(report, "pdf")

    english = b"".join(build_pack(loaded, "2026-10", "2026-10", AS_OF, lang="en"))
    with zipfile.ZipFile(io.BytesIO(english)) as zf:
        html = zf.read("reports/2026-10/qloop-report-2026-10-default.html")
        assert json.loads(zf.read("pack.json"))["report_lang"] == "en"
    report = build_report(loaded, "2026-10", as_of=AS_OF)
    assert html == render_report(report, "html", "en") != render_report(report, "html", "zh-CN")


def test_unknown_report_language_is_named(loaded: Runtime, tmp_path: Path) -> None:
    from core.errors import InputError

    with pytest.raises(InputError, match="lang: unknown report language 'fr'"):
        write_pack(loaded, "2026-10", "2026-10", AS_OF, tmp_path / "p.zip", actor="t", lang="fr")
    assert not list(tmp_path.glob("*.zip*")) and not list(tmp_path.glob(".p.zip*"))


def test_bad_period_is_named(loaded: Runtime, tmp_path: Path) -> None:
    from core.errors import InputError

    with pytest.raises(InputError, match="--to 2026-08 is before --from 2026-10"):
        write_pack(loaded, "2026-10", "2026-08", AS_OF, tmp_path / "p.zip", actor="t")
    with pytest.raises(InputError, match="is a folder"):
        write_pack(loaded, "2026-10", "2026-10", AS_OF, tmp_path, actor="t")
    assert not list(tmp_path.glob("*.zip"))


def _peak(rt: Runtime, start: str, end: str) -> tuple[int, int]:
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in build_pack(rt, start, end, AS_OF))
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_period_grows(
    loaded: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three months in one pack: the peak is one month's, not three times it.

    The pack is written entry by entry; the only things held whole are one
    policy-month evaluated as of the instant (as ``qloop export --as-of`` does)
    and one month's report. The reports are HTML only here: the PDF renderer
    parses its CJK font (about 100 MB, the same for any month) and is many
    times slower under tracemalloc.
    """
    monkeypatch.setattr("core.evidence.contents.REPORT_FORMATS", ("html",))
    _peak(loaded, "2026-10", "2026-10")  # warm caches (imports, compiled statements)
    small_peak, small_size = _peak(loaded, "2026-10", "2026-10")
    big_peak, big_size = _peak(loaded, "2026-08", "2026-10")
    assert big_size > 2 * small_size
    assert big_peak < 1.5 * small_peak, (small_peak, big_peak)
