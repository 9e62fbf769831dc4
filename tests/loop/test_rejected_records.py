"""A record the mapping refuses is set aside; its source goes on, and a resync brings it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.loop import pull, rejects, run_once
from core.store.models import Incident, RejectedRecord, SyncRun
from tests.utils.loop import Deployment, sandbox_config


def _config(database_url: str, tmp_path: Path, mapping: dict[str, Any] | None) -> Path:
    source: dict[str, Any] = {
        "type": "sandbox",
        "seed": "t",
        "month": "2026-10",
        "incidents": 60,
        "page_size": 25,
    }
    if mapping:
        source["mapping"] = mapping
    return sandbox_config(database_url, tmp_path, extra={"sources": {"itsm": source}})


def test_unmapped_priority_is_rejected_and_resolved_after_fix_and_resync(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "ref").mkdir()
    reference = Deployment(_config(f"sqlite:///{tmp_path / 'ref.db'}", tmp_path / "ref", None))
    ref = reference.open()
    pull(ref, "itsm")
    with ref.db.session() as s:
        all_keys = set(s.scalars(select(Incident.key)))
        low = set(s.scalars(select(Incident.key).where(Incident.priority == "P4")))
    reference.close()
    assert low and low < all_keys

    dep = Deployment(_config(database_url, tmp_path, {"priority_map": {"Low": None}}))
    try:
        rt = dep.open()
        summary = run_once(rt)
        assert summary.errors == []  # the loop is not stopped by the bad records
        with rt.db.session() as s:
            stored = set(s.scalars(select(Incident.key)))
            rejected = {r.key: r for r in rejects.listing(s, "itsm")}
            run = s.scalars(select(SyncRun).where(SyncRun.kind == "pull")).one()
        assert stored == all_keys - low  # every other incident, none of the refused
        assert set(rejected) == low
        assert all(r.field == "priority" and "'Low'" in r.error for r in rejected.values())
        assert run.status == "ok" and run.errors == len(low)
        assert run_once(rt).errors == []  # nothing new: the same versions are not re-read
        with rt.db.session() as s:
            assert {r.key: r.times for r in rejects.listing(s)} == dict.fromkeys(low, 1)

        _config(database_url, tmp_path, None)  # the operator fixes the mapping…
        rt = dep.open()
        assert run_once(rt).errors == []
        with rt.db.session() as s:  # …records read again (the overlap window) now map…
            still = {r.key for r in rejects.listing(s)}
            assert still and still <= low
            assert set(s.scalars(select(Incident.key))) == all_keys - still
        rejects.resync(rt, "itsm", "test")  # …until the resync
        assert run_once(rt).errors == []
        with rt.db.session() as s:
            assert set(s.scalars(select(Incident.key))) == all_keys
            assert rejects.listing(s) == []
            resolved = s.scalar(select(func.count()).where(RejectedRecord.resolved_at.is_not(None)))
        assert resolved == len(low)
    finally:
        dep.close()
