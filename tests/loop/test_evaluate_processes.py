"""The evaluate step split into id ranges run by child processes (issue 14).

Two processes leave the compliance records, the incidents' bookkeeping,
the month's indicators and (after the raise step) the nonconformities one
process leaves, byte for byte (sha256 of the ordered rows); only the
records' row ids follow the order the children inserted in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select

import core.loop.evaluate_parallel as parallel
from core.conf import load_config
from core.errors import ConfigError, StateError
from core.export import period_indicators
from core.loop import collect, plan, pull, push, raise_nonconformities, reconcile, run_once
from core.loop.evaluate import evaluate
from core.runtime import Runtime, open_runtime
from core.store.models import ComplianceRecord, IncidentEvaluation, Nonconformity, OutboxItem
from tests.utils.loop import FakeClock, sandbox_config

INCIDENTS = 120


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A sandbox month pulled, called back, surveyed and matched: all evaluate reads."""
    runtime = open_runtime(
        load_config(sandbox_config(database_url, tmp_path, incidents=INCIDENTS)), clock=FakeClock()
    )
    pull(runtime, "itsm")
    plan(runtime)
    push(runtime)
    for channel in runtime.channel_names():
        collect(runtime, channel)
    reconcile(runtime)
    try:
        yield runtime
    finally:
        runtime.close()


def _digest(rt: Runtime, model: type[Any], ignored: set[str], *order: Any) -> str:
    cols = [c for c in model.__table__.columns if c.name not in ignored]
    digest = hashlib.sha256()
    with rt.db.session() as s:
        for row in s.execute(select(*cols).order_by(*order)):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _outcome(rt: Runtime) -> dict[str, Any]:
    """What the step and the raise step after it leave, row ids aside."""
    raised = raise_nonconformities(rt)
    assert not raised.errors
    pol = rt.policy("default")
    with rt.db.session() as s:
        indicators = period_indicators(
            s, policy=pol.name, version=pol.version, month="2026-10", now=rt.now(), rules=pol
        )
        marks = s.execute(
            select(
                IncidentEvaluation.incident_id,
                IncidentEvaluation.evaluated_revision,
                IncidentEvaluation.evaluate_after,
            ).order_by(IncidentEvaluation.incident_id)
        ).all()
    return {
        "records": _digest(
            rt,
            ComplianceRecord,
            {"id"},
            ComplianceRecord.incident_id,
            ComplianceRecord.policy,
            ComplianceRecord.policy_version,
        ),
        "nonconformities": _digest(rt, Nonconformity, {"id"}, Nonconformity.dedup_key),
        "marks": marks,
        "indicators": indicators,
    }


def _forget(rt: Runtime) -> None:
    with rt.db.session() as s:
        s.execute(delete(OutboxItem).where(OutboxItem.kind == "ticket"))  # raised tickets
        s.execute(delete(Nonconformity))
        s.execute(delete(ComplianceRecord))
        s.execute(delete(IncidentEvaluation))


def test_two_processes_store_what_one_process_stores(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PER_PROCESS", 10)
    split: list[Any] = []
    run = parallel.evaluate_in_processes
    monkeypatch.setattr(
        parallel, "evaluate_in_processes", lambda *a, **k: split.append(run(*a, **k)) or split[-1]
    )
    (first, cut), (cut_again, last) = parallel.id_ranges(rt, rt.now(), 2, 10)
    assert first == 0 and cut == cut_again and last is None  # every id in one range
    two = evaluate(rt, processes=2)
    assert split and split[0] is two  # the children did it, not this process
    assert two.counts["evaluated"] == INCIDENTS and not two.errors
    assert evaluate(rt, processes=2).counts["evaluated"] == 0  # nothing left over
    with rt.db.session() as s:
        stored = s.scalars(select(ComplianceRecord.incident_id)).all()
    assert sorted(stored) == sorted(set(stored)) and len(stored) == INCIDENTS
    after_two = _outcome(rt)

    _forget(rt)
    one = evaluate(rt)
    assert one.counts == two.counts
    after_one = _outcome(rt)
    assert after_two == after_one
    assert after_one["indicators"].resolved > 0


def test_a_small_step_stays_in_this_process(rt: Runtime) -> None:
    assert parallel.id_ranges(rt, rt.now(), 2, parallel.MIN_PER_PROCESS) == []
    assert parallel.evaluate_in_processes(rt, 2) is None
    assert evaluate(rt, processes=2).counts["evaluated"] == INCIDENTS


def test_a_failed_child_fails_the_step_and_the_rest_is_evaluated_next_time(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PER_PROCESS", 10)
    _, second = parallel.id_ranges(rt, rt.now(), 2, 10)
    plain = parallel.evaluate_batches

    def failing(own: Runtime, **kwargs: Any) -> Any:
        if kwargs["id_range"] == second:
            msg = "disk on fire"
            raise RuntimeError(msg)
        return plain(own, **kwargs)

    monkeypatch.setattr(parallel, "evaluate_batches", failing)
    with pytest.raises(StateError, match="disk on fire"):
        evaluate(rt, processes=2)
    monkeypatch.setattr(parallel, "evaluate_batches", plain)
    with rt.db.session() as s:
        done = s.scalars(select(ComplianceRecord.incident_id)).all()
    assert done and all(i < second[0] for i in done)
    assert evaluate(rt).counts["evaluated"] == INCIDENTS - len(done)


def test_qloop_run_forks_as_many_as_the_config_says(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PER_PROCESS", 10)
    asked: list[int] = []
    run = parallel.evaluate_in_processes
    monkeypatch.setattr(
        parallel,
        "evaluate_in_processes",
        lambda rt, processes, *a, **k: asked.append(processes) or run(rt, processes, *a, **k),
    )
    path = sandbox_config(
        database_url, tmp_path, incidents=INCIDENTS, extra={"evaluate_processes": 2}
    )
    runtime = open_runtime(load_config(path), clock=FakeClock())
    try:
        summary = run_once(runtime)
        evaluated = next(step for step, _ in summary.steps if step.step == "evaluate")
        with runtime.db.session() as s:
            stored = s.scalars(select(ComplianceRecord.incident_id)).all()
    finally:
        runtime.close()
    assert asked == [2] and not summary.errors
    assert evaluated.counts["evaluated"] == INCIDENTS == len(set(stored)) == len(stored)


@pytest.mark.parametrize("value", [0, "two", 33])
def test_a_bad_process_count_is_named(tmp_path: Path, value: Any) -> None:
    path = sandbox_config("sqlite:///" + str(tmp_path / "q.db"), tmp_path, incidents=3)
    doc = yaml.safe_load(path.read_text("utf-8"))
    doc["evaluate_processes"] = value
    path.write_text(yaml.safe_dump(doc), "utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "evaluate_processes" in str(err.value)


def test_new_records_bound_as_tuples_store_what_the_values_dicts_store(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New records go to the driver as tuples (:mod:`core.loop.record_rows`); the general
    path (values dicts through each column's type) stores the same."""
    import core.loop.record_rows as record_rows

    fast = evaluate(rt)
    assert fast.counts["evaluated"] == INCIDENTS
    with_tuples = _outcome(rt)
    _forget(rt)
    monkeypatch.setattr(record_rows, "DIALECTS", ())
    general = evaluate(rt)
    assert general.counts == fast.counts
    assert _outcome(rt) == with_tuples
