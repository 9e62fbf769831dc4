"""The pull's store step: rows as written (driver path on SQLite), digests across versions,
and JSON columns written by orjson decoding to what ``json.dumps`` wrote."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from core.loop.common import StepResult, set_cursor
from core.loop.pull import fingerprint, legacy_fingerprint, upsert_records
from core.records import Category, Contact, IncidentRecord, StatusChange
from core.store import open_database
from core.store.db import json_text
from core.store.models import Incident, SourceState, StatusEvent

T0 = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


def _record(n: int, *, title: str = "Printer down", status: str = "Done") -> IncidentRecord:
    history = (
        StatusChange(T0, Category.NEW, "Open"),
        StatusChange(T0 + timedelta(minutes=30 + n), Category.IN_PROGRESS, "In Progress"),
        StatusChange(T0 + timedelta(hours=5), Category.RESOLVED, status),
    )
    return IncidentRecord(
        external_id=str(1000 + n),
        key=f"SUP-{n}",
        title=title,
        priority="P2",
        status=status,
        category=Category.RESOLVED,
        created_at=T0.astimezone(PARIS),
        updated_at=T0 + timedelta(hours=5),
        history=history,
        service="Mail",
        customer=None,
        contact=Contact("Zoë Ünal", "+33 6 12 34 56 78", f"z{n}@example.com"),
        first_response_at=history[1].at,
        resolved_at=history[2].at,
        source_sla={"response_met": True, "cycles": {"ttr": {"goal_ms": 14_400_000}}},
        raw={"id": str(1000 + n), "fields": {"summary": title, "名": "値", "n": [1, 2.5, None]}},
    )


def _pull(db: object, records: list[IncidentRecord]) -> Counter[str]:
    result = StepResult("pull")
    with db.session() as s:  # type: ignore[attr-defined]
        upsert_records(s, "jira", records, T0 + timedelta(days=1), result)
    return result.counts


def test_new_incidents_are_stored_with_their_history(database_url: str) -> None:
    db = open_database(database_url)
    try:
        counts = _pull(db, [_record(n) for n in range(3)])
        assert counts["created"] == 3
        with db.session() as s:
            inc = s.scalars(select(Incident).where(Incident.external_id == "1001")).one()
            events = list(
                s.scalars(
                    select(StatusEvent)
                    .where(StatusEvent.incident_id == inc.id)
                    .order_by(StatusEvent.seq)
                )
            )
        assert (inc.key, inc.title, inc.status, inc.category) == ("SUP-1", "Printer down", "Done",
                                                                   "resolved")  # fmt: skip
        assert inc.created_at == T0 and inc.created_at.tzinfo is UTC
        assert inc.resolved_at == T0 + timedelta(hours=5)
        assert inc.contact_name == "Zoë Ünal" and inc.email_key == "z1@example.com"
        assert inc.raw == {"id": "1001", "fields": {"summary": "Printer down", "名": "値",
                                                     "n": [1, 2.5, None]}}  # fmt: skip
        assert inc.source_sla == {"response_met": True, "cycles": {"ttr": {"goal_ms": 14_400_000}}}
        assert inc.fingerprint == fingerprint(_record(1))
        assert [(e.seq, e.status, e.category, e.observed) for e in events] == [
            (0, "Open", "new", False),
            (1, "In Progress", "in_progress", False),
            (2, "Done", "resolved", False),
        ]
        assert events[1].at == T0 + timedelta(minutes=31)
    finally:
        db.dispose()


def test_a_digest_stored_by_an_older_version_still_means_unchanged(database_url: str) -> None:
    db = open_database(database_url)
    try:
        _pull(db, [_record(n) for n in range(2)])
        with db.session() as s:  # as an older qloop stored them: json.dumps digests
            for n in range(2):
                s.execute(
                    update(Incident)
                    .where(Incident.external_id == str(1000 + n))
                    .values(fingerprint=legacy_fingerprint(_record(n)))
                )
        counts = _pull(db, [_record(0), _record(1, title="Printer on fire")])
        assert (counts["unchanged"], counts["updated"]) == (1, 1)
        with db.session() as s:
            revs = dict(s.execute(select(Incident.external_id, Incident.revision)).all())
            fps = dict(s.execute(select(Incident.external_id, Incident.fingerprint)).all())
        assert revs == {"1000": 1, "1001": 2}
        assert fps["1001"] == fingerprint(_record(1, title="Printer on fire"))
        # the same records again: nothing changes
        counts = _pull(db, [_record(0), _record(1, title="Printer on fire")])
        assert (counts["unchanged"], counts["updated"]) == (2, 0)
    finally:
        db.dispose()


def test_fingerprint_follows_what_qloop_reads() -> None:
    base = fingerprint(_record(1))
    assert base == fingerprint(_record(1))
    assert len(base) == 64 and base != legacy_fingerprint(_record(1))
    assert fingerprint(_record(1, title="x")) != base
    assert fingerprint(_record(2)) != base  # a history instant differs
    assert fingerprint(_record(1, status="Closed")) != base
    # what orjson refuses is digested as the older version did, the same every time
    odd = IncidentRecord(**{**_record(1).__dict__, "source_sla": {"big": 10**30, "n": {3: "x"}}})
    assert fingerprint(odd) == legacy_fingerprint(odd) == fingerprint(odd)


@pytest.mark.parametrize(
    "value",
    [
        {"a": "é\u2028\x00", "b": [1, -2.5, 1e-05, None, True, False], "c": {}},
        [{"deep": [[["x"]]]}, 0, 2**63 - 1, -(2**63)],
        {"big": 10**30},  # beyond 64 bits: json.dumps writes it
        {1: "int key", "x": None},  # non-string keys: json.dumps writes them as text
    ],
)
def test_json_columns_decode_to_what_json_dumps_wrote(value: object) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


def test_json_columns_refuse_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError):
        json_text({"at": T0})


def test_pulls_raise_the_young_gc_threshold_while_any_runs() -> None:
    import gc

    from core.gcfreeze import YOUNG_GC_THRESHOLD, fewer_collections

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 1, 1)
            with fewer_collections():  # a second pull on another thread
                assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 1, 1)
            assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 1, 1)
        assert gc.get_threshold() == (700, 10, 10)
        with pytest.raises(RuntimeError), fewer_collections():
            raise RuntimeError("the pull failed")
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(0, 10, 10)  # collection turned off: left alone
        with fewer_collections():
            assert gc.get_threshold() == (0, 10, 10)
        assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*saved)


def test_the_cursor_is_set_by_one_update_and_its_row_added_when_missing(
    database_url: str,
) -> None:
    db = open_database(database_url)
    try:
        with db.session() as s:
            set_cursor(s, "jira", "c1")  # no row yet: added
        with db.session() as s:
            set_cursor(s, "jira", "c2")
            set_cursor(s, "other", None)
        with db.session() as s:
            rows = {r.name: r.cursor for r in s.scalars(select(SourceState))}
        assert rows == {"jira": "c2", "other": None}
    finally:
        db.dispose()


def _stored_rows(db: object) -> list[tuple[object, ...]]:
    with db.session() as s:  # type: ignore[attr-defined]
        conn = s.connection()
        incidents = conn.exec_driver_sql(
            "SELECT external_id, key, title, fingerprint, CAST(raw AS TEXT),"
            " CAST(source_sla AS TEXT), created_at, updated_at FROM incident"
            " ORDER BY external_id"
        ).all()
        events = conn.exec_driver_sql(
            "SELECT i.external_id, e.seq, e.at, e.status FROM status_event e"
            " JOIN incident i ON i.id = e.incident_id ORDER BY i.external_id, e.seq"
        ).all()
    return [*map(tuple, incidents), *map(tuple, events)]


def test_a_raw_payload_sent_as_text_is_stored_as_the_dict_is(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A batch that crossed a pull child's pipe (raw kept as its text) stores the same rows."""
    from connectors.kit import wire
    from core.jsontext import JsonText
    from core.records import PulledBatch

    records = [_record(n) for n in range(3)]
    crossed = wire.unpack(wire.pack(PulledBatch(records, None))).records
    assert all(type(r.raw) is JsonText for r in crossed)
    assert list(crossed) == records  # equal records: the text reads as the dict
    other = f"sqlite:///{tmp_path_factory.mktemp('dicts') / 'q.db'}"
    if database_url.startswith("sqlite"):
        rows = []
        for url, batch in ((database_url, records), (other, crossed)):
            db = open_database(url)
            try:
                assert _pull(db, batch)["created"] == 3
                rows.append(_stored_rows(db))
            finally:
                db.dispose()
        assert rows[0] == rows[1]
        return
    db = open_database(database_url)  # PostgreSQL: the text is written as the JSON value
    try:
        _pull(db, list(crossed))
        with db.session() as s:
            stored = {i.external_id: (i.raw, i.source_sla) for i in s.scalars(select(Incident))}
    finally:
        db.dispose()
    assert stored == {r.external_id: (r.raw, r.source_sla) for r in records}


def test_json_text_is_a_read_only_mapping_of_its_text() -> None:
    import pickle

    from core.jsontext import JsonText

    value = {"id": "7", "fields": {"名": [1, 2.5, None]}}
    text = JsonText(json_text(value).encode())
    assert text == value and value == text and dict(text) == value
    assert text["fields"] == {"名": [1, 2.5, None]} and len(text) == 2 and "id" in text
    assert json_text(text) == json_text(value)  # stored as its text
    assert pickle.loads(pickle.dumps(text)) == value
    with pytest.raises(TypeError, match="not an object"):
        len(JsonText(b"[1]"))
