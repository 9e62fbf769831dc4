"""Migrations create exactly the models' schema; instants come back aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from core.store import open_database
from core.store.models import Base, Incident, OutboxItem

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
