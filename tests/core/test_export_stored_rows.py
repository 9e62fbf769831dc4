"""The stored export's fast rows equal :func:`incident_row` over the ORM objects, and the
CSV writer's column-by-column path writes the same bytes as cell by cell."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.compliance.indicators import IndicatorsFold
from core.export.nc_sheet import NC_COLUMNS, nc_rows, nc_table, nc_tuples
from core.export.rows import (
    COLUMN_KINDS,
    COLUMNS,
    RECORD_FIELDS,
    RecordTally,
    export_rows,
    export_tuples,
    fold_nonconformities,
    incident_row,
    period_indicators,
)
from core.export.writers import Table, csv_chunks, jsonl_chunks, xlsx_chunks
from core.store.models import ComplianceRecord, Incident, Nonconformity, SurveyInvitation
from tests.api.conftest import Served, api_config, serve_month

MONTH = "2026-10"
PARIS = ZoneInfo("Europe/Paris")  # its October has a transition (25th, 01:00 UTC)
FINALS: list[list[dict[str, Any]]] = [
    [
        {"final": True, "attempts": 1, "first_reached_at": "2026-10-01T00:00:00+00:00"},
        {"final": False, "attempts": 9, "first_reached_at": "2026-10-02T00:00:00+00:00"},
        {"final": True, "attempts": 2, "first_reached_at": "2026-10-25T00:59:59+00:00"},
        {"final": False, "attempts": 7},
    ],
    [{"final": False, "attempts": 3, "first_reached_at": "2026-10-03T00:00:00+00:00"}],
    [],
    [{"final": True, "attempts": None, "first_reached_at": None}],
    [{"final": True, "attempts": 4, "first_reached_at": "2026-10-25T01:30:00.250000+01:00"}],
]
TITLES = ["=1+1", "-2", "@SUM(A1)", "\tx", "+86 138 1234 5678 call", "a@b.example", ""]


@pytest.fixture
def month(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """A sandbox month with hostile titles and resolutions of every shape."""
    for served in serve_month(api_config(database_url, tmp_path, incidents=30)):
        with served.rt.db.session() as s:
            records = list(
                s.scalars(
                    select(ComplianceRecord)
                    .where(ComplianceRecord.month == MONTH, ~ComplianceRecord.cancelled)
                    .order_by(ComplianceRecord.id)
                )
            )
            assert len(records) > len(FINALS) + len(TITLES)
            for rec, resolutions in zip(records, FINALS, strict=False):
                rec.resolutions = resolutions
            records[0].response_s = -7
            for rec, title in zip(records[len(FINALS) :], TITLES, strict=False):
                inc = s.get(Incident, rec.incident_id)
                assert inc is not None
                inc.title = title
        yield served


def _reference(served: Served, *, unmask: bool) -> list[dict[str, Any]]:
    """incident_row over the ORM objects, in the export's order."""
    pol = served.rt.policy("default")
    with served.rt.db.session() as s:
        rows = s.execute(
            select(ComplianceRecord, Incident, SurveyInvitation.state, SurveyInvitation.channel)
            .join(Incident, Incident.id == ComplianceRecord.incident_id)
            .outerjoin(SurveyInvitation, SurveyInvitation.incident_id == Incident.id)
            .where(
                ComplianceRecord.policy == "default",
                ComplianceRecord.policy_version == pol.version,
                ComplianceRecord.month == MONTH,
                ~ComplianceRecord.cancelled,
            )
            .order_by(ComplianceRecord.resolved_at, Incident.id)
        ).all()
        out = []
        for rec, inc, state, channel in rows:
            ncs = [
                (nc.rule, nc.severity, nc.state != "closed")
                for nc in s.scalars(
                    select(Nonconformity).where(
                        Nonconformity.incident_id == inc.id,
                        Nonconformity.policy == "default",
                        Nonconformity.state != "withdrawn",
                    )
                )
            ]
            values = {f: getattr(rec, f) for f in RECORD_FIELDS}
            out.append(incident_row(values, inc, (state, channel), ncs, tz=PARIS, unmask=unmask))
        return out


@pytest.mark.parametrize("unmask", [False, True])
def test_stored_rows_equal_incident_row(month: Served, unmask: bool) -> None:
    expected = _reference(month, unmask=unmask)
    pol = month.rt.policy("default")
    kw: dict[str, Any] = {
        "policy": "default",
        "version": pol.version,
        "month": MONTH,
        "tz": PARIS,
        "unmask": unmask,
    }
    with month.rt.db.session() as s:
        got = list(export_rows(s, **kw))
        tuples = list(export_tuples(s, **kw))
        ncs = list(nc_rows(s, **kw))
        nc_values = list(nc_tuples(s, **kw))
    assert got == expected
    assert {r["callback_attempts"] for r in got} >= {2, None}  # the shapes above were read
    assert [tuple(r.values()) for r in got] == tuples
    assert ncs and [tuple(r[c] for c in NC_COLUMNS) for r in ncs] == nc_values

    def same(make: Any, dicts: Table, rows: Table) -> None:
        assert b"".join(make(dicts)) == b"".join(make(rows))

    plain = Table("incidents", COLUMNS, got)
    fast = Table("incidents", COLUMNS, tuples, tuples=True, kinds=COLUMN_KINDS)
    same(csv_chunks, plain, fast)
    same(jsonl_chunks, plain, fast)
    same(lambda t: xlsx_chunks([t], created=datetime(2026, 11, 1, tzinfo=UTC)), plain, fast)
    same(csv_chunks, nc_table(iter(ncs)), nc_table(iter(nc_values), tuples=True))


def test_indicators_counted_while_the_rows_pass_equal_the_grouped_query(month: Served) -> None:
    rt = month.rt
    pol = rt.policy("default")
    with rt.db.session() as s:  # a cancelled record: in neither
        rec = s.scalars(
            select(ComplianceRecord)
            .where(ComplianceRecord.month == MONTH, ~ComplianceRecord.cancelled)
            .order_by(ComplianceRecord.id.desc())
        ).first()
        assert rec is not None
        rec.cancelled = True
    now = rt.now()
    kw: dict[str, Any] = {"policy": "default", "version": pol.version, "month": MONTH}
    with rt.db.session() as s:
        expected = period_indicators(s, now=now, rules=pol, **kw)
        fold = IndicatorsFold(MONTH, now, policy=pol)
        fold_nonconformities(s, fold, now=now, **kw)
        tally = RecordTally()
        rows = export_tuples(s, tz=PARIS, tally=tally, **kw)
        next(rows)
        with pytest.raises(RuntimeError, match="before every row"):
            tally.fold_into(fold, MONTH)
        n = 1 + sum(1 for _ in rows)
        tally.fold_into(fold, MONTH)
    got = fold.result()
    assert got == expected
    assert got.resolved == n == sum(tally.counts.values())
    assert expected.nonconformities_total > 0 and len(tally.counts) > 1
