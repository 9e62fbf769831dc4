"""The Mapper's generated path getters and its record construction against the generic code."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import mappings
from core.mapping import Mapper, _new_record, _path_getter, get_path
from core.records import Category, Contact, IncidentRecord, StatusChange

KEYS = st.sampled_from(["a", "b", "0", "1", "2", "10", "²", "", "x.y"])
LEAVES = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.booleans())


def _containers(children: Any) -> Any:
    return st.one_of(
        st.dictionaries(KEYS, children, max_size=4),
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=3).map(MappingProxyType),  # a Mapping, not a dict
        st.dictionaries(KEYS, children, max_size=3).map(OrderedDict),  # a dict subclass
        st.tuples(children),  # neither: never indexed
    )


TREES = st.recursive(LEAVES, _containers, max_leaves=20)
PATHS = st.lists(st.sampled_from(["a", "b", "0", "1", "2", "10", "²", ""]), min_size=1, max_size=5)


@settings(max_examples=3000, deadline=None)
@given(tree=TREES, parts=PATHS)
def test_a_generated_getter_reads_what_get_path_reads(tree, parts):
    path = ".".join(parts)
    assert _path_getter(path)(tree) == get_path(tree, path)


def test_a_getter_indexes_lists_and_walks_mappings():
    raw = {"f": {"c": [{"n": "svc"}, {"n": "two"}]}, "m": MappingProxyType({"k": {"v": 1}})}
    assert _path_getter("f.c.1.n")(raw) == "two"
    assert _path_getter("f.c.2.n")(raw) is None
    assert _path_getter("f.c.n")(raw) is None  # a key on a list: nothing
    assert _path_getter("m.k.v")(raw) == 1  # through a Mapping that is not a dict
    assert _path_getter("f.c.0.n.x")(raw) is None  # past a string
    assert _path_getter("f.'c'")(raw) is None  # a quote in a key is a key, not code


def _record_values() -> dict[str, Any]:
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    return {
        "external_id": "1",
        "key": "K-1",
        "title": "t",
        "priority": "P2",
        "status": "Open",
        "category": Category.NEW,
        "created_at": at,
        "updated_at": at,
        "history": (StatusChange(at, Category.NEW, "Open"),),
        "service": None,
        "customer": "c",
        "contact": Contact(name="n"),
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "source_sla": {"met": True},
        "raw": {"id": "1"},
    }


def test_a_record_built_without_init_is_the_constructors():
    values = _record_values()
    built, constructed = _new_record(**values), IncidentRecord(**values)
    assert type(built) is IncidentRecord
    assert built == constructed and hash(built.contact) == hash(constructed.contact)
    assert dataclasses.asdict(built) == dataclasses.asdict(constructed)
    try:
        built.title = "changed"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a record built without __init__ must stay frozen")
    # a call that does not name every field takes the constructor (its defaults)
    del values["raw"]
    assert _new_record(**values).raw == {}


def test_mapped_records_equal_constructed_ones():
    mapper = Mapper(mappings.load("jira_sm"))
    raw = {
        "id": "7",
        "key": "SUP-7",
        "fields": {
            "summary": "Printer",
            "status": {"name": "Open"},
            "priority": {"name": "High"},
            "created": "2026-03-03T09:00:00.000+0100",
            "updated": "2026-03-03T10:00:00.000+0100",
            "components": [{"name": "Print"}],
        },
        "history": [{"at": "2026-03-03T09:30:00.000+0100", "status": "In Progress"}],
        "contact": {"name": " Ann ", "email": "ann@example.com", "phone": None},
    }
    rec = mapper.map(raw)
    assert set(vars(rec)) == {f.name for f in dataclasses.fields(IncidentRecord)}  # every field
    again = IncidentRecord(**{f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)})
    assert rec == again
    assert rec.service == "Print" and rec.contact == Contact(name="Ann", email="ann@example.com")
