"""Migrations create exactly the models' schema; instants come back aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.store import open_database
from core.store.models import Base, Incident, OutboxItem


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
