"""The incidents file of an export written by several processes (``export_processes``).

The file is cut by its ORDER BY key into contiguous parts, the later ones
written by forked children: the bytes of every file (CSV, JSON lines, the
indicators) are the ones one process writes, masked or not, in any zone.
A child that fails, a parent that stops, or records that change between the
parts fail the export: no file is renamed into place and no temporary file
is left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

import core.export.split as split
from core.conf import load_config
from core.errors import ConfigError, StateError
from core.export.month import export_month
from core.export.rows import (
    COLUMNS,
    ExportKey,
    KeyRange,
    export_columns,
    export_split_keys,
)
from core.store.models import ComplianceRecord, Incident
from tests.api.conftest import Served, api_config, serve_month

MONTH = "2026-10"
TITLES = ["=1+1", '"quoted", "text"', "-2", "a@b.example", "\tx", "", "élan 漢字"]


@pytest.fixture
def month(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """A sandbox month whose records share resolved_at instants (cuts inside a tie) and
    whose titles need quoting or a formula guard."""
    for served in serve_month(api_config(database_url, tmp_path, incidents=60)):
        with served.rt.db.session() as s:
            records = list(
                s.scalars(
                    select(ComplianceRecord)
                    .where(ComplianceRecord.month == MONTH, ~ComplianceRecord.cancelled)
                    .order_by(ComplianceRecord.id)
                )
            )
            assert len(records) > 20
            tie = records[0].resolved_at
            for rec in records[1:9]:  # nine records resolved at the same instant
                rec.resolved_at = tie
            for rec, title in zip(records[10:], TITLES, strict=False):
                inc = s.get(Incident, rec.incident_id)
                assert inc is not None
                inc.title = title
        yield served


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Any month is worth splitting; records whether each export was split."""
    monkeypatch.setattr(split, "MIN_PER_PROCESS", 1)
    seen: list[bool] = []
    real = split.split_incidents

    def spy(*args: Any, **kwargs: Any) -> Any:
        table = real(*args, **kwargs)
        seen.append(table is not None)
        return table

    monkeypatch.setattr("core.export.month.split_incidents", spy)
    return seen


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("fmt", "zone", "unmask"),
    [
        ("csv", "UTC", False),
        ("jsonl", "UTC", True),
        ("csv", "Europe/Paris", True),
        ("jsonl", "Asia/Kolkata", False),
    ],
)
def test_parts_written_by_children_give_the_bytes_of_one_process(
    month: Served, splits: list[bool], tmp_path: Path, fmt: str, zone: str, unmask: bool
) -> None:
    rt = month.rt
    rt.config = dataclasses.replace(rt.config, timezone=zone)
    at = rt.now()
    rt.clock = lambda: at  # the indicators' now: the same for every export
    one = export_month(rt, MONTH, fmt, tmp_path / "one", unmask=unmask, processes=1)
    assert splits == []  # one process never tries
    expected = _files(tmp_path / "one")
    assert len(one) == 3 and expected[f"qloop-{MONTH}-default.{fmt}"].count(b"\n") > 20
    for processes in (2, 3):
        out = tmp_path / f"p{processes}"
        export_month(rt, MONTH, fmt, out, unmask=unmask, processes=processes)
        assert _files(out) == expected  # every file, no temporary one left
    assert splits == [True, True]


def test_the_configured_processes_are_used_and_xlsx_stays_one(
    month: Served, splits: list[bool], tmp_path: Path
) -> None:
    rt = month.rt
    rt.config = dataclasses.replace(rt.config, export_processes=2)
    export_month(rt, MONTH, "jsonl", tmp_path / "a")
    export_month(rt, MONTH, "xlsx", tmp_path / "b")
    assert splits == [True, False]


def test_key_ranges_cover_the_rows_once_in_order(month: Served) -> None:
    rt = month.rt
    pol = rt.policy("default")
    kw: dict[str, Any] = {"policy": "default", "version": pol.version, "month": MONTH}

    def rows(keys: KeyRange) -> list[tuple[Any, ...]]:
        with rt.db.session() as s:
            return [
                row
                for batch in export_columns(s, tz=ZoneInfo("UTC"), keys=keys, **kw)
                for row in zip(*batch, strict=True)
            ]

    everything = rows((None, None))
    with rt.db.session() as s:
        count, keys = export_split_keys(s, parts=4, least=1, **kw)
        assert export_split_keys(s, parts=4, least=count, **kw) == (count, [])
    assert count == len(everything) and len(keys) == 3
    # a cut inside the tie: the key of a middle record of the nine sharing an instant
    with rt.db.session() as s:
        tied = s.execute(
            select(ComplianceRecord.resolved_at, ComplianceRecord.incident_id)
            .where(ComplianceRecord.month == MONTH, ~ComplianceRecord.cancelled)
            .order_by(ComplianceRecord.id)
            .limit(9)
        ).all()
    at = tied[0][0].strftime("%Y-%m-%d %H:%M:%S.%f")
    inside: ExportKey = (at, sorted(i for _, i in tied)[4])
    for cuts in (keys, [inside], sorted([*keys, inside])):
        bounds: list[ExportKey | None] = [None, *cuts, None]
        parts = [rows((bounds[k], bounds[k + 1])) for k in range(len(bounds) - 1)]
        assert all(parts)
        assert [row for part in parts for row in part] == everything
    index = COLUMNS.index("resolved_at")
    assert [r[index] for r in everything] == sorted(r[index] for r in everything)


def _no_file(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_failing_child_fails_the_export_and_writes_nothing(
    month: Served, splits: list[bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = split.export_columns

    def failing(*args: Any, keys: KeyRange, **kwargs: Any) -> Any:
        if keys[0] is not None:  # a child's part
            msg = "disk on fire"
            raise OSError(msg)
        return real(*args, keys=keys, **kwargs)

    monkeypatch.setattr(split, "export_columns", failing)
    out = tmp_path / "out"
    with pytest.raises(StateError, match="disk on fire"):
        export_month(month.rt, MONTH, "csv", out, processes=2)
    _no_file(out)
    assert splits == [True]


def test_a_parent_failing_mid_way_stops_the_children_and_leaves_no_part(
    month: Served, splits: list[bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = split.export_columns
    started: list[Any] = []

    def failing(*args: Any, keys: KeyRange, **kwargs: Any) -> Iterator[Any]:
        if keys[0] is not None:
            yield from real(*args, keys=keys, **kwargs)
            return
        started.extend(child.process for child in split_children())
        msg = "the parent's part failed"
        raise RuntimeError(msg)

    instances: list[split.SplitIncidents] = []
    real_start = split.SplitIncidents._start

    def start(self: split.SplitIncidents) -> None:
        instances.append(self)
        real_start(self)

    def split_children() -> list[Any]:
        return instances[-1].children

    monkeypatch.setattr(split, "export_columns", failing)
    monkeypatch.setattr(split.SplitIncidents, "_start", start)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"qloop-{MONTH}-default.jsonl").write_bytes(b"previous\n")
    with pytest.raises(RuntimeError, match="parent's part"):
        export_month(month.rt, MONTH, "jsonl", out, processes=3)
    assert _files(out) == {f"qloop-{MONTH}-default.jsonl": b"previous\n"}
    assert len(started) == 2 and not any(p.is_alive() for p in started)


def test_records_changing_between_the_parts_fail_the_export(
    month: Served, splits: list[bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = split.export_split_keys

    def one_more(*args: Any, **kwargs: Any) -> tuple[int, list[ExportKey]]:
        rows, keys = real(*args, **kwargs)
        return rows + 1, keys  # as if a record had left the month between the reads

    monkeypatch.setattr(split, "export_split_keys", one_more)
    out = tmp_path / "out"
    with pytest.raises(StateError, match="changed while its parts were read"):
        export_month(month.rt, MONTH, "jsonl", out, processes=2)
    _no_file(out)


def test_export_processes_is_validated(database_url: str, tmp_path: Path) -> None:
    path = api_config(database_url, tmp_path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["export_processes"] = 2
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert load_config(path).export_processes == 2
    doc["export_processes"] = 0
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="export_processes"):
        load_config(path)


def test_a_month_without_resolved_at_everywhere_is_not_split(month: Served) -> None:
    rt = month.rt
    pol = rt.policy("default")
    with rt.db.session() as s:
        rec = s.scalars(select(ComplianceRecord).where(ComplianceRecord.month == MONTH)).first()
        assert rec is not None
        rec.resolved_at = None
    with rt.db.session() as s:
        count, keys = export_split_keys(
            s, policy="default", version=pol.version, month=MONTH, parts=2, least=1
        )
    assert count > 2 and keys == []
