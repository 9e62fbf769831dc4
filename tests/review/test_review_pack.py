"""The management review pack (issue 12 item 3): KPIs, closure, audit findings, one zip."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.cli import main
from core.errors import InputError
from core.evidence import verify_pack
from core.export.as_of import indicators_as_of, judge_period
from core.review import build_review, load_findings, review_chunks, write_review_pack
from core.runtime import Runtime
from core.store.models import AuditLog, Nonconformity
from tests.review.conftest import TARGETS
from tests.utils.loop import Deployment

AS_OF = datetime(2026, 11, 20, tzinfo=UTC)
FINDINGS = """\
findings:
  - id: IA-2026-02
    audit: Internal audit 2026-H2
    audited_on: 2026-10-20
    finding: "=HYPERLINK(\\"x\\") complaint records lack root causes"
    severity: major
    due: 2026-11-01
    state: in_progress
  - id: IA-2026-01
    audit: Internal audit 2026-H1
    audited_on: 2026-06-15
    clause: ISO/IEC 20000-1 8.6.1
    finding: P4 callbacks were not made within 24 hours
    severity: minor
    owner: Service desk
    due: 2026-08-31
    state: closed
    closed_on: 2026-08-20
    rectification: Evening shift added
"""


def _pack(rt: Runtime, as_of: datetime = AS_OF, **kw: Any) -> bytes:
    manifest: list[bytes] = []
    kw.setdefault("findings", [])
    kw.setdefault("findings_file", None)
    kw.setdefault("lang", None)
    return b"".join(review_chunks(rt, 2026, as_of, manifest=manifest, **kw))


def test_kpis_are_the_months_indicators_against_the_targets(loaded: Runtime) -> None:
    data = build_review(loaded, 2026, as_of=AS_OF)
    assert data["months"] == [f"2026-{m:02d}" for m in range(1, 12)]
    (section,) = data["kpi"]
    assert section["targets"] == TARGETS
    sums = {name: [0, 0] for name in section["year"]}
    with loaded.db.session() as s:
        for row in section["months"]:
            ind = indicators_as_of(loaded, judge_period(loaded, s, "default", row["month"], AS_OF))
            ratios = {
                "callback_coverage": ind.callback_coverage,
                "callback_on_time": ind.callback_on_time,
                "response": ind.response,
                "csat_survey": ind.csat["survey"],
            }
            for name, ratio in ratios.items():
                cell = row["kpis"][name]
                assert (cell["numerator"], cell["denominator"]) == (
                    ratio.numerator,
                    ratio.denominator,
                ), (row["month"], name)
            for name, cell in row["kpis"].items():
                sums[name][0] += cell["numerator"]
                sums[name][1] += cell["denominator"]
                target = TARGETS.get(name)
                if cell["denominator"] == 0 or target is None:
                    assert cell["met"] is None
                else:
                    assert cell["met"] is (cell["numerator"] / cell["denominator"] >= target)
    measured = [r for r in section["months"] if r["kpis"]["response"]["denominator"]]
    # resolutions of the three sandbox months fall in them and in the next one
    assert {"2026-08", "2026-09", "2026-10"} <= {r["month"] for r in measured}
    assert all(r["month"] >= "2026-08" for r in measured)
    for name, cell in section["year"].items():
        assert [cell["numerator"], cell["denominator"]] == sums[name]
        verdicts = [r["kpis"][name]["met"] for r in section["months"]]
        assert cell["months_met"] == verdicts.count(True)
        assert cell["months_missed"] == verdicts.count(False)
    # 0.99 on time is not reached by the sandbox; coverage 0.5 is
    on_time = section["year"]["callback_on_time"]
    assert on_time["months_missed"] == len(measured) and on_time["months_met"] == 0
    assert section["year"]["callback_coverage"]["months_met"] >= 3
    assert section["year"]["resolution"]["target"] is None


def test_closure_counts_every_nonconformity_raised_once(loaded: Runtime) -> None:
    data = build_review(loaded, 2026, as_of=AS_OF)
    total = data["nonconformities"]["total"]
    with loaded.db.session() as s:
        ncs = s.execute(select(Nonconformity)).scalars().all()
        seen = [nc for nc in ncs if nc.created_at <= AS_OF]
        closed = [nc for nc in seen if nc.closed_at is not None and nc.closed_at <= AS_OF]
        on_time = [nc for nc in closed if nc.closed_at <= nc.deadline]
    assert total["raised"] == len(seen) > 0
    assert total["closed_on_time"] == len(on_time)
    assert total["closed"] == len(closed)
    parts = ("closed_on_time", "closed_late", "open_overdue", "open_in_time", "withdrawn")
    assert sum(total[p] for p in parts) == total["raised"]
    assert sum(m["raised"] for m in data["nonconformities"]["months"]) == total["raised"]
    assert sum(t["raised"] for t in data["nonconformities"]["by_severity"].values()) == len(seen)
    if closed:
        times = sorted(int((nc.closed_at - nc.raised_at).total_seconds()) for nc in closed)
        assert times[0] <= total["median_close_s"] <= times[-1]


def test_a_ticket_closed_before_its_deadline_counts_on_time(
    loaded: Runtime, deployment: Deployment
) -> None:
    before = build_review(loaded, 2026, as_of=AS_OF)["nonconformities"]["total"]
    with loaded.db.session() as s:
        nc = (
            s.execute(
                select(Nonconformity).where(
                    Nonconformity.closed_at.is_(None), Nonconformity.created_at <= AS_OF
                )
            )
            .scalars()
            .first()
        )
        assert nc is not None
        nc.state = "closed"
        nc.closed_at = min(nc.deadline, AS_OF)
        s.commit()
    after = build_review(loaded, 2026, as_of=AS_OF)["nonconformities"]["total"]
    assert after["closed_on_time"] == before["closed_on_time"] + 1
    assert after["raised"] == before["raised"]


def test_pack_verifies_is_reproducible_and_names_tampering(
    loaded: Runtime, deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    findings_file = tmp_path / "findings.yaml"
    findings_file.write_text(FINDINGS, encoding="utf-8")
    found = load_findings(findings_file)
    out = tmp_path / "review.zip"
    sha = write_review_pack(
        loaded, 2026, AS_OF, out, actor="cli:qa", findings=found, findings_file="findings.yaml"
    )
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = zf.read("manifest.json")
        doc = json.loads(zf.read("review.json"))
        rows = list(csv.DictReader(io.StringIO(zf.read("audit-findings.csv").decode("utf-8-sig"))))
        html = zf.read("review.html").decode("utf-8")
    assert names[-1] == "manifest.json" and sha == hashlib.sha256(manifest).hexdigest()
    assert json.loads(manifest)["format"] == "qloop-review/1"
    assert {"kpi.csv", "nonconformity-closure.csv", "review.xlsx"} <= set(names)
    # the year's complaint report rides along, and its counts are the review's
    assert {
        "complaints/qloop-complaints-2026-zh-CN.html",
        "complaints/qloop-complaints-2026-zh-CN.xlsx",
    } <= set(names)
    assert (
        set(doc["complaints"]) == {"counts", "medians"} and "total" in doc["complaints"]["counts"]
    )
    assert doc["campaigns"] == []  # no campaign planned in this deployment
    assert doc["lang"] == "zh-CN" and "2026 年度管理评审" in html
    assert [r["id"] for r in rows] == ["IA-2026-01", "IA-2026-02"]
    assert rows[1]["finding"].startswith("'=")  # never a formula in a spreadsheet
    assert rows[1]["overdue"] == "yes" and rows[0]["overdue"] == "no"
    assert doc["audit_findings"]["overdue"] == 1 and doc["audit_findings"]["done"] == 1
    with loaded.db.session() as s:
        entry = s.execute(select(AuditLog).filter_by(action="review_pack")).scalar_one()
        assert entry.detail["manifest_sha256"] == sha and entry.actor == "cli:qa"

    deployment.clock.advance(days=2)  # later, nothing new stored: same bytes
    again = _pack(loaded, findings=found, findings_file="findings.yaml")
    assert again == out.read_bytes()
    english = _pack(loaded, findings=found, findings_file="findings.yaml", lang="en")
    with zipfile.ZipFile(io.BytesIO(english)) as zf:
        assert "Management review 2026" in zf.read("review.html").decode("utf-8")

    assert main(["review-pack", "verify", str(out)]) == 0
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "kpi.csv":
                data = data.replace(b"default", b"tampered", 1)
            zout.writestr(info.filename, data)
    assert verify_pack(bad).changed == ["kpi.csv"]
    assert main(["review-pack", "verify", str(bad)]) == 1
    assert "changed: kpi.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        (
            FINDINGS.replace("IA-2026-01", "IA-2026-02"),
            ".yaml",
            ":9: findings[1].id: id 'IA-2026-02' again (first at line 2)",
        ),
        (
            FINDINGS.replace("severity: minor", "severity: low"),
            ".yaml",
            ":14: findings[1].severity: 'low' is not one of",
        ),
        (
            FINDINGS.replace("    closed_on: 2026-08-20\n", ""),
            ".yaml",
            "findings[1].closed_on: state closed needs closed_on",
        ),
        (
            FINDINGS.replace("due: 2026-08-31", "due: 2026-02-30"),
            ".yaml",
            "findings[1]: not a date",
        ),
        (
            "id,audit,finding,severity,state,colour\nA1,H1,late calls,minor,open,red\n",
            ".csv",
            ":2: findings[0].colour: unknown key 'colour'",
        ),
        (
            "id,audit,finding,severity,state\nA1,H1,late calls,minor,\n",
            ".csv",
            ":2: findings[0]: 'state' is a required property",
        ),
        ("findings: []\n", ".txt", "unknown kind of file '.txt'"),
    ],
)
def test_a_bad_findings_file_is_named_at_its_line(
    tmp_path: Path, text: str, suffix: str, expected: str
) -> None:
    from core.conf import ConfigError

    path = tmp_path / f"findings{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_findings(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_csv_findings_read_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        "\ufeffid,audit,finding,severity,state,due,closed_on\n"
        "A2,H2,no root causes,major,verified,2026-09-01,2026-08-30\n"
        "A1,H1,late calls,minor,open,2026-01-31,\n",
        encoding="utf-8",
    )
    a1, a2 = load_findings(path)
    assert (a1.id, a1.state, a1.closed_on, a1.due.isoformat()) == ("A1", "open", None, "2026-01-31")
    assert a2.closed_on is not None and a2.closed_on.isoformat() == "2026-08-30"


def test_cli_refuses_bad_input_and_writes_nothing(
    loaded: Runtime, deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "findings.yaml"
    bad.write_text(FINDINGS.replace("severity: major", "severity: huge"), encoding="utf-8")
    out = tmp_path / "r.zip"
    cfg = ["-c", str(deployment.path)]
    assert (
        main(["review-pack", *cfg, "--year", "2026", "--findings", str(bad), "--out", str(out)])
        != 0
    )
    assert "findings[0].severity" in capsys.readouterr().err
    assert main(["review-pack", *cfg, "--year", "2999", "--out", str(out)]) != 0
    assert "--year 2999 has not begun" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip*")) and not list(tmp_path.glob(".r.zip*"))
    with pytest.raises(InputError, match="is a folder"):
        write_review_pack(loaded, 2026, AS_OF, tmp_path, actor="t", findings=[])
