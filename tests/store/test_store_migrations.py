"""Migrations create exactly the models' schema; instants come back aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select
from sqlalchemy.exc import IntegrityError

from core.store import open_database
from core.store.models import Base, Incident, IncidentEvaluation, OutboxItem

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_the_models(database_url: str) -> None:
    db = open_database(database_url)
    try:
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        open_database(database_url).dispose()  # migrating again is a no-op
    finally:
        db.dispose()


def _incident(**kw: object) -> Incident:
    now = datetime(2026, 10, 1, tzinfo=UTC)
    values: dict[str, object] = dict(
        source="s",
        external_id="1",
        key="K-1",
        title="t",
        priority="P3",
        status="Open",
        category="new",
        created_at=now,
        updated_at=now,
        fingerprint="x",
        ingested_at=now,
        changed_at=now,
    )
    values.update(kw)
    return Incident(**values)


def test_instants_round_trip_as_aware_utc(database_url: str) -> None:
    db = open_database(database_url)
    try:
        created = datetime(2026, 10, 9, 9, 30, tzinfo=timezone(timedelta(hours=8)))
        with db.session() as s:
            s.add(_incident(created_at=created))
        with db.session() as s:
            got = s.scalar(select(Incident.created_at))
        assert got == created
        assert got is not None and got.tzinfo is not None and got.utcoffset() == timedelta(0)
    finally:
        db.dispose()


def test_naive_instants_are_refused(database_url: str) -> None:
    db = open_database(database_url)
    try:
        with pytest.raises(Exception, match="naive"), db.session() as s:
            s.add(_incident(created_at=datetime(2026, 10, 9, 9, 30)))
    finally:
        db.dispose()


def test_uniqueness_carries_idempotency(database_url: str) -> None:
    db = open_database(database_url)
    now = datetime(2026, 10, 1, tzinfo=UTC)
    try:
        with db.session() as s:
            s.add(_incident())
        with pytest.raises(IntegrityError), db.session() as s:
            s.add(_incident(title="again"))
        with db.session() as s:
            s.add(
                OutboxItem(
                    idempotency_key="k",
                    kind="callback",
                    target="t",
                    entity_id=1,
                    state="pending",
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        with pytest.raises(IntegrityError), db.session() as s:
            s.add(
                OutboxItem(
                    idempotency_key="k",
                    kind="callback",
                    target="t",
                    entity_id=2,
                    state="pending",
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    finally:
        db.dispose()


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    """Workers that start at the same moment all find the schema at head, none fails."""
    import threading

    from sqlalchemy import text

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            open_database(database_url).dispose()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_database(database_url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    db.dispose()


def test_scripts_head_is_alembics_head() -> None:
    """The head read from the scripts' text is the one Alembic finds by importing them."""
    from alembic.script import ScriptDirectory

    from core.store.db import _alembic_config, _scripts_head, head_revision

    alembic_head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert _scripts_head() == alembic_head
    assert head_revision() == alembic_head


def test_a_store_behind_head_is_migrated(database_url: str) -> None:
    """The check that skips Alembic at head does not skip a store one revision behind."""
    from sqlalchemy import text

    from core.store.db import current_revision, head_revision, make_engine, migrate

    engine = make_engine(database_url)
    try:
        migrate(engine, "0008")
        with engine.connect() as conn:
            assert current_revision(conn) == "0008"
            assert "web_session_end" not in inspect_tables(conn)
    finally:
        engine.dispose()
    db = open_database(database_url)
    try:
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            assert "web_session_end" in inspect_tables(conn)
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


def inspect_tables(conn: Connection) -> list[str]:
    from sqlalchemy import inspect

    return inspect(conn).get_table_names()


def test_opening_a_store_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """A process opening a store already at head never loads Alembic (its memory stays free)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/qloop.db"
    open_database(url).dispose()  # create and migrate once
    code = (
        "import sys\n"
        "from core.store import open_database\n"
        "from core.store.db import open_existing\n"
        f"open_database({url!r}).dispose()\n"
        f"open_existing({url!r}).dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_several_recorded_revisions_are_refused(tmp_path: Path) -> None:
    from sqlalchemy import text

    from core.errors import StateError
    from core.store.db import current_revision

    db = open_database(f"sqlite:///{tmp_path}/qloop.db")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0001')"))
        with db.engine.connect() as conn, pytest.raises(StateError, match="several"):
            current_revision(conn)
    finally:
        db.dispose()


def test_0010_moves_the_evaluate_bookkeeping_and_back(database_url: str) -> None:
    """0010 moves ``evaluated_revision`` / ``evaluate_after`` off the incident rows into
    ``incident_evaluation`` (a row only for incidents evaluated); the downgrade puts them
    back. Nothing that references an incident is lost on the way (no table copy)."""
    from alembic import command
    from sqlalchemy import text

    from core.store.db import _alembic_config, current_revision, make_engine, migrate

    engine = make_engine(database_url)
    after = "2026-10-02 09:00:00.000000" if engine.dialect.name == "sqlite" else "2026-10-02 09:00Z"
    columns = (
        "source, external_id, key, title, priority, status, category, created_at, updated_at,"
        " source_sla, raw, fingerprint, ingested_at, changed_at, revision, planned_revision,"
        " evaluated_revision, evaluate_after"
    )
    now = "'2026-10-01 00:00:00.000000'"
    marks = {1: (3, after), 2: (0, None), 3: (2, None)}
    try:
        migrate(engine, "0009")
        with engine.begin() as conn:
            for ext, (rev, at) in marks.items():
                conn.execute(
                    text(
                        f"INSERT INTO incident ({columns}) VALUES ('s', '{ext}', 'K-{ext}', 't',"
                        f" 'P3', 'Open', 'new', {now}, {now}, '{{}}', '{{}}', 'x', {now}, {now},"
                        " 4, 0, :rev, :at)"
                    ),
                    {"rev": rev, "at": at},
                )
            ids = dict(conn.execute(text("SELECT external_id, id FROM incident")).all())
            conn.execute(
                text(
                    "INSERT INTO status_event (incident_id, seq, at, status, category, observed)"
                    f" VALUES (:i, 0, {now}, 'Open', 'new', false)"
                ),
                {"i": ids["1"]},
            )
        migrate(engine, "head")
        with engine.connect() as conn:
            assert "evaluated_revision" not in {
                c["name"] for c in inspect(conn).get_columns("incident")
            }
            rows = conn.execute(
                select(
                    IncidentEvaluation.incident_id,
                    IncidentEvaluation.evaluated_revision,
                    IncidentEvaluation.evaluate_after,
                ).order_by(IncidentEvaluation.incident_id)
            ).all()
            assert [(r[0], r[1]) for r in rows] == [(ids["1"], 3), (ids["3"], 2)]
            assert rows[0][2] == datetime(2026, 10, 2, 9, tzinfo=UTC)
            assert rows[1][2] is None
            assert conn.execute(text("SELECT count(*) FROM status_event")).scalar() == 1
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        with engine.connect() as conn:
            assert current_revision(conn) == "0009"
            back = conn.execute(
                text(
                    "SELECT external_id, evaluated_revision, evaluate_after IS NOT NULL"
                    " FROM incident ORDER BY external_id"
                )
            ).all()
            assert [tuple(r) for r in back] == [("1", 3, True), ("2", 0, False), ("3", 2, False)]
            assert "incident_evaluation" not in inspect_tables(conn)
            assert conn.execute(text("SELECT count(*) FROM status_event")).scalar() == 1
        migrate(engine, "head")  # and up again
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM incident_evaluation")).scalar() == 2
    finally:
        engine.dispose()
