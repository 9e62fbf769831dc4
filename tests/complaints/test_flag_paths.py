"""The database reads a flag's field out of a raw record as get_path does (issue 14).

from_sources selects each matcher's field with a JSON path instead of the
whole raw record; on both databases every matcher must then decide as it
does on the decoded record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from core.complaints.match import flagged_by, flagged_by_values, json_paths
from core.runtime import Runtime
from core.store.models import Incident
from tests.utils.fixture_connectors import WORLD, register_fixture_types
from tests.utils.loop import Deployment, fixture_config

RAWS: list[Any] = [
    {"fields": {"labels": ["VIP", "Complaint "]}},
    {"fields": {"labels": "a COMPLAINT about it"}},
    {"fields": {"labels": "complaint"}},
    {"fields": {"labels": 5, "urgent": True}},
    {"fields": {"labels": True, "urgent": False}},
    {"fields": {"labels": {"x": [1, {"y": "ü"}]}}},
    {"fields": {"labels": None}},
    {"fields": {}},
    {"fields": ["labels"]},
    {"fields": "labels"},
    {},
    {"fields": {"labels": 'ü "q" \\ ß complaint', "kind": "Beschwerde"}},
    {"fields": {"la.bels": 1, "labels": [None, 1.5, True]}},
    {"fields": {"kind": "complaint", "urgent": 1}},
]
MATCHERS: list[list[dict[str, Any]]] = [
    [{"field": "fields.labels", "contains": "complaint"}],
    [{"field": "fields.labels", "equals": "complaint"}],
    [{"field": "fields.labels", "equals": 5}, {"field": "fields.urgent"}],
    [{"field": "fields.urgent", "equals": True}],
    [{"field": "fields.urgent", "in": [1, "yes"]}],
    [{"field": "fields.kind", "in": ["Complaint", "beschwerde"]}],
    [{"field": "fields.labels"}],
    [{"field": "fields.labels", "contains": "ß"}],
]


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    register_fixture_types()
    WORLD.reset()
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep.open()
    dep.close()


def test_json_paths_give_the_flags_get_path_gives(rt: Runtime) -> None:
    now = rt.now()
    with rt.db.session() as s:
        ids = [
            s.execute(
                insert(Incident)
                .values(
                    source="flags",
                    external_id=f"F-{n}",
                    key=f"F-{n}",
                    title="t",
                    priority="P3",
                    status="Open",
                    category="new",
                    created_at=now,
                    updated_at=now,
                    ingested_at=now,
                    changed_at=now,
                    fingerprint="-",
                    raw=raw,
                )
                .returning(Incident.id)
            ).scalar_one()
            for n, raw in enumerate(RAWS)
        ]
    flagged = 0
    for matchers in MATCHERS:
        paths = json_paths(matchers)
        assert paths is not None
        with rt.db.session() as s:
            rows = s.execute(
                select(Incident.id, *[Incident.raw[p] for p in paths])
                .where(Incident.id.in_(ids))
                .order_by(Incident.id)
            ).all()
        for raw, (_, *values) in zip(RAWS, rows, strict=True):
            expected = flagged_by(raw, matchers)
            assert flagged_by_values(values, matchers) == expected, (raw, matchers)
            flagged += expected is not None
    assert flagged > 10  # the cases flag as well as not
    with rt.db.session() as s:
        s.execute(delete(Incident).where(Incident.source == "flags"))


def test_a_list_index_in_a_field_reads_the_whole_record() -> None:
    assert json_paths([{"field": "fields.labels.0", "equals": "x"}]) is None
    assert json_paths([{"field": "fields..labels"}]) is None
    assert json_paths([{"field": "a.b"}, {"field": "c"}]) == [("a", "b"), ("c",)]
