"""The bulk write helpers store what the ORM would, on SQLite (driver path) and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.loop._bulk import BoundRows, insert_returning_ids, insert_rows, update_by_id
from core.store.models import AuditLog, Base

SHANGHAI = timezone(timedelta(hours=8))


def _session(url: str) -> tuple[Session, object]:
    engine = create_engine(url)
    Base.metadata.create_all(engine, tables=[AuditLog.__table__])  # type: ignore[list-item]
    return Session(engine), engine


def test_insert_update_round_trip(database_url: str) -> None:
    s, engine = _session(database_url)
    at = datetime(2026, 12, 7, 22, 15, 5, 123, tzinfo=SHANGHAI)
    rows = [
        {"at": at, "actor": "qloop", "action": "a", "entity": "e", "entity_id": str(n),
         "detail": {"n": n, "名": "值", "nested": [1, None, True]}}
        for n in range(3)
    ]  # fmt: skip
    insert_rows(s, AuditLog, rows)
    # a row without its defaulted column takes SQLAlchemy's path, which fills it in
    insert_rows(s, AuditLog, [{"at": at, "actor": "x", "action": "b", "entity": "e",
                               "entity_id": None}])  # fmt: skip
    ids = insert_returning_ids(
        s,
        AuditLog,
        [{"at": at, "actor": "y", "action": "c", "entity": "e", "entity_id": f"k{n}",
          "detail": {}} for n in range(2500)],
        "entity_id",
    )  # fmt: skip
    assert sorted(ids) == sorted(f"k{n}" for n in range(2500))
    update_by_id(
        s,
        AuditLog,
        [{"id": ids["k1"], "detail": {"changed": True}, "at": at + timedelta(hours=1)},
         {"id": ids["k2"], "entity_id": None}],
    )  # fmt: skip
    s.commit()
    stored = list(s.scalars(select(AuditLog)))
    got = {r.entity_id: r for r in stored if r.entity_id is not None}
    s.close()
    engine.dispose()  # type: ignore[attr-defined]
    assert got["1"].detail == {"n": 1, "名": "值", "nested": [1, None, True]}
    assert got["1"].at == at and got["1"].at.tzinfo is UTC
    assert len(stored) == 3 + 1 + 2500
    defaulted = [r for r in stored if r.action == "b"]
    assert len(defaulted) == 1 and defaulted[0].detail == {}
    assert got["k1"].detail == {"changed": True}
    assert got["k1"].at == at + timedelta(hours=1)
    assert "k2" not in got and [r.entity_id for r in stored if r.id == ids["k2"]] == [None]
    assert got["k0"].at == at and got["k0"].detail == {}


def test_bound_rows_store_what_insert_rows_stores(database_url: str) -> None:
    """BoundRows (tuples bound as added, constants bound once) stores the same rows as
    insert_rows, constant or not, zone or not, None and JSON included."""
    s, engine = _session(database_url)
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    other = datetime(2026, 12, 7, 20, 0, 0, 5, tzinfo=SHANGHAI)
    equal_not_same = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)  # == now, another object
    rows = [
        {"at": at, "actor": actor, "action": "a", "entity": "e", "entity_id": eid,
         "detail": detail, "ignored": "not a column of names"}
        for at, actor, eid, detail in (
            (now, "bound", "1", {"n": 1, "名": "值"}),
            (other, "bound", "2", {}),
            (equal_not_same, "bound", None, {"nested": [1, None, True]}),
        )
    ]  # fmt: skip
    names = ["at", "actor", "action", "entity", "entity_id", "detail"]
    bound = BoundRows(s, AuditLog, names, {"at": now})
    for row in rows:
        bound.add(row)
    assert len(bound) == 3
    bound.insert()
    assert len(bound) == 0
    insert_rows(s, AuditLog, [{**{n: r[n] for n in names}, "actor": "plain"} for r in rows])
    # a column with a Python default left out: the dicts go through insert_rows
    partial = BoundRows(s, AuditLog, ["at", "actor", "action", "entity", "entity_id"])
    partial.add({**rows[1], "actor": "partial"})
    partial.insert()
    s.commit()
    stored = list(s.scalars(select(AuditLog).order_by(AuditLog.id)))
    s.close()
    engine.dispose()  # type: ignore[attr-defined]

    def seen(actor: str) -> list[tuple[object, ...]]:
        return [(r.at, r.at.tzinfo, r.entity_id, r.detail) for r in stored if r.actor == actor]

    assert seen("bound") == seen("plain")
    assert seen("bound") == [
        (now, UTC, "1", {"n": 1, "名": "值"}),
        (other, UTC, "2", {}),
        (now, UTC, None, {"nested": [1, None, True]}),
    ]
    assert seen("partial") == [(other, UTC, "2", {})]
