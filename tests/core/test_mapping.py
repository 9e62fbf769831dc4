"""The generic field-mapping engine (core.mapping) and the bundled mappings."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

import mappings
from core.errors import ConfigError, InputError
from core.mapping import (
    Mapper,
    derive_milestones,
    get_path,
    map_incident,
    merge_mapping,
    render_ticket,
    validate_mapping,
)
from core.records import Category, StatusChange


@pytest.fixture()
def mapping() -> dict:
    return mappings.load("sandbox")


@pytest.fixture()
def raw() -> dict:
    return {
        "id": "10023",
        "key": "SBX-23",
        "fields": {
            "summary": "VPN 频繁断线",
            "status": {"name": "Resolved"},
            "priority": {"name": "High"},
            "service": {"id": "svc-2", "name": "Network & VPN"},
            "organization": {"id": "org-1", "name": "华东电力集团"},
            "reporter": {"displayName": "李娜", "emailAddress": "李娜@example.cn",
                         "phone": "+8613812345678"},
            "created": "2026-10-05T09:00:00+08:00",
            "updated": "2026-10-06T10:00:00+08:00",
            "sla": {"response_met": True, "resolution_met": False},
        },
        "changelog": [  # deliberately not in order
            {"at": "2026-10-05T09:10:00+08:00", "status": "In Progress"},
            {"at": "2026-10-05T09:00:00+08:00", "status": "Open"},
            {"at": "2026-10-05T12:00:00+08:00", "status": "Resolved"},
            {"at": "2026-10-05T15:00:00+08:00", "status": "In Progress"},
            {"at": "2026-10-06T10:00:00+08:00", "status": "Resolved"},
        ],
    }  # fmt: skip


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_maps_a_sandbox_record(raw, mapping):
    rec = map_incident(raw, mapping)
    assert (rec.external_id, rec.key, rec.title) == ("10023", "SBX-23", "VPN 频繁断线")
    assert (rec.status, rec.category, rec.priority) == ("Resolved", Category.RESOLVED, "P2")
    assert (rec.service, rec.customer) == ("Network & VPN", "华东电力集团")
    assert rec.contact.name == "李娜" and rec.contact.email == "李娜@example.cn"
    assert rec.contact.phone == "+8613812345678"
    assert rec.created_at == utc(2026, 10, 5, 1, 0)
    assert rec.updated_at == utc(2026, 10, 6, 2, 0)
    assert [c.category for c in rec.history] == [
        Category.NEW, Category.IN_PROGRESS, Category.RESOLVED, Category.IN_PROGRESS,
        Category.RESOLVED,
    ]  # fmt: skip
    assert all(c.at.tzinfo is UTC for c in rec.history)
    assert rec.first_response_at == utc(2026, 10, 5, 1, 10)
    assert rec.resolved_at == utc(2026, 10, 6, 2, 0)  # the final resolution, after the reopen
    assert rec.closed_at is None
    assert rec.source_sla == {"response_met": True, "resolution_met": False}
    assert rec.raw is raw


@pytest.mark.parametrize(
    ("path", "field"),
    [("fields.summary", "title"), ("fields.created", "created_at"), ("id", "external_id"),
     ("fields.status", "status"), ("fields.priority", "priority")],
)  # fmt: skip
def test_missing_required_field_names_record_and_path(raw, mapping, path, field):
    parent, _, leaf = path.rpartition(".")
    del (get_path(raw, parent) if parent else raw)[leaf]
    with pytest.raises(InputError) as err:
        map_incident(raw, mapping)
    text = str(err.value)
    assert "SBX-23" in text and field in text
    assert err.value.field == field
    assert err.value.path.startswith(path)


def test_unmapped_status_priority_and_history_status(raw, mapping):
    bad = copy.deepcopy(raw)
    bad["fields"]["status"]["name"] = "Escalated"
    with pytest.raises(InputError, match=r"SBX-23.*fields\.status\.name.*'Escalated'"):
        map_incident(bad, mapping)
    bad = copy.deepcopy(raw)
    bad["fields"]["priority"]["name"] = "Blocker"
    with pytest.raises(InputError, match=r"SBX-23 \(id 10023\).*fields\.priority\.name.*Blocker"):
        map_incident(bad, mapping)
    bad = copy.deepcopy(raw)
    bad["changelog"][2]["status"] = "On hold"
    with pytest.raises(InputError, match=r"SBX-23.*changelog\.2\.status.*On hold"):
        map_incident(bad, mapping)


def test_bad_instant_names_the_field(raw, mapping):
    raw["changelog"][1]["at"] = "yesterday"
    with pytest.raises(InputError, match=r"SBX-23.*changelog\.1\.at"):
        map_incident(raw, mapping)


def test_value_maps_are_case_insensitive_and_accept_numbers(raw, mapping):
    raw["fields"]["status"]["name"] = "in progress"
    assert map_incident(raw, mapping).category == Category.IN_PROGRESS
    glpi = merge_mapping(mapping, {"priority_map": {5: "P1"}})
    raw["fields"]["priority"]["name"] = 5
    assert map_incident(raw, glpi).priority == "P1"
    raw["fields"]["priority"]["name"] = "5"
    assert map_incident(raw, glpi).priority == "P1"


def test_paths_lists_fallbacks_and_constants(raw, mapping):
    raw["participants"] = [{"phone": "+8613900000000"}, {"phone": "+8613911111111"}]
    override = {"record": {"contact": {"phone": ["fields.customfield_1", "participants.1.phone"]},
                           "customer": {"const": "ACME"}}}  # fmt: skip
    rec = map_incident(raw, merge_mapping(mapping, override))
    assert rec.contact.phone == "+8613911111111"
    assert rec.customer == "ACME"
    assert rec.contact.email == "李娜@example.cn"  # untouched by the override
    assert get_path(raw, "participants.5.phone") is None
    assert get_path(raw, "fields.summary.nope") is None


def test_naive_instants_need_a_zone(raw, mapping):
    raw["fields"]["created"] = "2026-10-05 09:00:00"
    assert map_incident(raw, mapping).created_at == utc(2026, 10, 5, 1)  # mapping timezone
    no_zone = merge_mapping(mapping, {"timezone": None})
    with pytest.raises(InputError, match="created_at"):
        map_incident(raw, no_zone)
    rec = map_incident(raw, no_zone, default_tz=ZoneInfo("Europe/Paris"))
    assert rec.created_at == utc(2026, 10, 5, 7)
    raw["fields"]["created"] = 1_790_000_000_000  # epoch milliseconds
    assert map_incident(raw, no_zone).created_at == datetime.fromtimestamp(1_790_000_000, UTC)


def test_history_from_status_is_prepended(mapping):
    raw = {"id": "1", "fields": {"summary": "s", "status": {"name": "Resolved"},
           "priority": {"name": "Low"}, "created": "2026-10-05T09:00:00+08:00"},
           "changelog": [{"at": "2026-10-05T10:00:00+08:00", "status": "Resolved",
                          "from": "In Progress"}]}  # fmt: skip
    m = merge_mapping(mapping, {"history": {"from": "from"}})
    rec = map_incident(raw, m)
    assert rec.key == "1"
    assert [(c.category, c.at) for c in rec.history] == [
        (Category.IN_PROGRESS, utc(2026, 10, 5, 1)), (Category.RESOLVED, utc(2026, 10, 5, 2))
    ]  # fmt: skip
    assert rec.first_response_at == utc(2026, 10, 5, 1)


def test_unsorted_history_keeps_ties_in_order_and_reads_from_the_oldest(mapping):
    raw = {"id": "1", "fields": {"summary": "s", "status": {"name": "Resolved"},
           "priority": {"name": "Low"}, "created": "2026-10-05T09:00:00+08:00"},
           "changelog": [
               {"at": "2026-10-05T04:00:00+02:00", "status": "Resolved", "from": "Open"},
               {"at": "2026-10-05T10:00:00+08:00", "status": "In Progress", "from": "Open"},
               {"at": "2026-10-05T02:00:00Z", "status": "Open", "from": "Open"},
               {"at": "2026-10-05T09:30:00+08:00", "status": "Waiting for customer",
                "from": "Backlog"},
           ]}  # fmt: skip
    m = merge_mapping(mapping, {"history": {"from": "from"}, "status_map": {"Backlog": "new"}})
    rec = map_incident(raw, m)
    assert [(c.status, c.at) for c in rec.history] == [
        ("Backlog", utc(2026, 10, 5, 1)),  # the oldest entry's "from", at created
        ("Waiting for customer", utc(2026, 10, 5, 1, 30)),
        ("Resolved", utc(2026, 10, 5, 2)),  # a tie: in the order given
        ("In Progress", utc(2026, 10, 5, 2)),
        ("Open", utc(2026, 10, 5, 2)),
    ]  # fmt: skip


def test_derive_milestones():
    t = [utc(2026, 10, 1, h) for h in range(8)]
    new, wip, res, clo = Category.NEW, Category.IN_PROGRESS, Category.RESOLVED, Category.CLOSED
    h = [StatusChange(t[0], new), StatusChange(t[1], wip), StatusChange(t[2], clo)]
    assert derive_milestones(h) == (t[1], t[2], t[2])  # closed without resolved counts
    h += [StatusChange(t[3], wip)]  # reopened from closed
    assert derive_milestones(h) == (t[1], None, None)
    h += [StatusChange(t[4], res), StatusChange(t[5], clo)]
    assert derive_milestones(h) == (t[1], t[4], t[5])
    assert derive_milestones([StatusChange(t[0], new)]) == (None, None, None)


def test_bad_mapping_is_a_config_error(raw, mapping):
    with pytest.raises(ConfigError, match="category"):
        map_incident(raw, merge_mapping(mapping, {"status_map": {"Resolved": "done"}}))
    with pytest.raises(ConfigError, match="priority_map"):
        map_incident(raw, merge_mapping(mapping, {"priority_map": {"High": "urgent"}}))
    with pytest.raises(ConfigError, match="record"):
        map_incident(raw, {})
    broken = merge_mapping(mapping, {"record": {"title": None}, "status_map": {"X": "nope"}})
    with pytest.raises(ConfigError) as err:
        validate_mapping(broken, "ops.yaml")
    paths = {p.path for p in err.value.problems}
    assert paths == {"record.title", "status_map.X"}
    validate_mapping(mapping)


def test_merge_mapping_is_deep_and_pure(mapping):
    before = copy.deepcopy(mapping)
    merged = merge_mapping(mapping, {
        "status_map": {"Pending vendor": "waiting", "Cancelled": None},
        "record": {"contact": {"phone": "fields.customfield_10042"}},
        "ticket": {"labels": ["only"]},
    })  # fmt: skip
    assert mapping == before
    assert merged["status_map"]["Pending vendor"] == "waiting"
    assert "Cancelled" not in merged["status_map"] and merged["status_map"]["Open"] == "new"
    assert merged["record"]["contact"] == {**before["record"]["contact"],
                                           "phone": "fields.customfield_10042"}  # fmt: skip
    assert merged["ticket"]["labels"] == ["only"]
    assert merge_mapping(mapping, None) == mapping


VALUES = {"rule": "callback_missed", "severity": "major", "incident_key": "SBX-23",
          "raised_at": "2026-10-06T10:00:00+08:00", "deadline": "2026-10-20T18:00:00+08:00",
          "detail": "No callback within 24 h."}  # fmt: skip


def test_render_sandbox_ticket(mapping):
    ticket = render_ticket(mapping["ticket"], VALUES)
    assert ticket["title"] == "[QA] callback_missed on SBX-23 (major)"
    assert "No callback within 24 h." in ticket["description"]
    assert "2026-10-20T18:00:00+08:00" in ticket["description"]
    assert ticket["labels"] == ["qloop", "qloop-callback_missed", "severity-major"]


def test_render_ticket_errors():
    with pytest.raises(InputError, match=r"labels\.1.*\{team\}") as err:
        render_ticket({"labels": ["qa", "{team}"]}, VALUES)
    assert err.value.placeholder == "team"
    with pytest.raises(InputError, match="title"):
        render_ticket({"title": "{rule"}, VALUES)
    for positional in ("{0}", "{}"):  # no positional values: an input error, not a crash
        with pytest.raises(InputError, match="title"):
            render_ticket({"title": positional}, VALUES)
    assert render_ticket({"title": "{{literal}} {rule}", "n": 3}, VALUES) == {
        "title": "{literal} callback_missed", "n": 3}  # fmt: skip


def test_mappings_load_unknown_lists_available():
    with pytest.raises(ConfigError, match=r"unknown mapping 'no_such_itsm'.*sandbox"):
        mappings.load("no_such_itsm")
    with pytest.raises(ConfigError):
        mappings.load("../pyproject")
    assert "sandbox" in mappings.available()


def test_a_prepared_mapper_maps_as_map_incident(raw, mapping):
    """``Mapper`` (a mapping prepared once) gives the records and the errors of
    ``map_incident``."""
    m = merge_mapping(mapping, {"history": {"from": "from"}, "timezone": "Asia/Shanghai"})
    mapper = Mapper(m)
    assert mapper.map(raw) == map_incident(raw, m)
    raw["fields"]["created"] = "2026-10-05T09:00:00"  # naive: read in the mapping's zone
    assert mapper.map(raw).created_at == utc(2026, 10, 5, 1) == map_incident(raw, m).created_at
    raw["fields"]["status"]["name"] = "Weird"
    with pytest.raises(InputError) as err:
        mapper.map(raw)
    with pytest.raises(InputError) as again:
        map_incident(raw, m)
    assert str(err.value) == str(again.value)
    assert "record SBX-23 (id 10023): status at 'fields.status.name'" in str(err.value)


def test_a_mapping_changed_in_place_is_read_again(raw, mapping):
    assert map_incident(raw, mapping).priority == "P2"
    mapping["priority_map"]["High"] = "P1"  # the same dict, edited after a first use
    assert map_incident(raw, mapping).priority == "P1"
