"""The sandbox incident generator: deterministic, realistic, well-formed."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.sandbox import remote
from connectors.sandbox.generator import generate_incidents, iter_incidents, view_as_of

TZ = ZoneInfo("Asia/Shanghai")
STATUSES = {"Open", "In Progress", "Waiting for customer", "Resolved", "Closed", "Cancelled"}
NEXT = {  # which status may follow which
    "Open": {"In Progress", "Cancelled"},
    "In Progress": {"Waiting for customer", "Resolved", "Cancelled"},
    "Waiting for customer": {"In Progress"},
    "Resolved": {"In Progress", "Closed"},
    "Closed": set(),
    "Cancelled": set(),
}
RESPONSE = {"Highest": 900, "High": 1800, "Medium": 4 * 3600, "Low": 9 * 3600}


@pytest.fixture(scope="module")
def incidents() -> list[dict]:
    return generate_incidents("test-seed", "2026-10", 2000)


def statuses(raw: dict) -> list[str]:
    return [e["status"] for e in raw["changelog"]]


def share(items: list[dict], predicate) -> float:
    return sum(1 for x in items if predicate(x)) / len(items)


def business_seconds(a: datetime, b: datetime) -> int:
    """Mon–Fri 09:00–18:00 overlap of [a, b) in Shanghai time (independent of the generator)."""
    a, b = a.astimezone(TZ), b.astimezone(TZ)
    total, day = 0, a.date()
    while day <= b.date():
        if day.weekday() < 5:
            lo = max(a, datetime(day.year, day.month, day.day, 9, tzinfo=TZ))
            hi = min(b, datetime(day.year, day.month, day.day, 18, tzinfo=TZ))
            total += max(0, int((hi - lo).total_seconds()))
        day += timedelta(days=1)
    return total


def test_same_seed_same_incidents_and_different_seed_differs(incidents):
    assert generate_incidents("test-seed", "2026-10", 2000) == incidents
    other = generate_incidents("other-seed", "2026-10", 2000)
    assert other != incidents
    assert [x["fields"]["created"] for x in other] != [x["fields"]["created"] for x in incidents]
    assert generate_incidents("test-seed", "2026-11", 50) != incidents[:50]


def test_ids_keys_and_shape(incidents):
    assert [x["id"] for x in incidents] == [str(10000 + n) for n in range(2000)]
    assert len({x["key"] for x in incidents}) == 2000
    raw = incidents[0]
    assert set(raw) == {"id", "key", "fields", "changelog"}
    assert {"summary", "status", "priority", "service", "organization", "reporter", "created",
            "updated", "sla"} <= set(raw["fields"])  # fmt: skip
    assert set(raw["fields"]["reporter"]) == {"displayName", "emailAddress", "phone"}


def test_priority_distribution(incidents):
    counts = Counter(x["fields"]["priority"]["name"] for x in incidents)
    n = len(incidents)
    assert counts["Highest"] / n == pytest.approx(0.05, abs=0.02)
    assert counts["High"] / n == pytest.approx(0.15, abs=0.03)
    assert counts["Medium"] / n == pytest.approx(0.50, abs=0.04)
    assert counts["Low"] / n == pytest.approx(0.30, abs=0.04)


def test_lifecycle_distribution(incidents):
    cancelled = share(incidents, lambda x: statuses(x)[-1] == "Cancelled")
    assert cancelled == pytest.approx(0.03, abs=0.015)
    reopened = share(incidents, lambda x: statuses(x).count("Resolved") > 1)
    assert reopened == pytest.approx(0.05, abs=0.02)
    waiting = share(incidents, lambda x: "Waiting for customer" in statuses(x))
    assert waiting == pytest.approx(0.20, abs=0.035)
    never = share(incidents, lambda x: statuses(x)[-1] in ("In Progress", "Waiting for customer"))
    assert 0.003 < never < 0.04  # some are stuck for good


def test_created_in_month_mostly_office_hours(incidents):
    local = [datetime.fromisoformat(x["fields"]["created"]).astimezone(TZ) for x in incidents]
    assert all(t.year == 2026 and t.month == 10 for t in local)
    office = sum(1 for t in local if t.weekday() < 5 and 9 <= t.hour < 18) / len(local)
    assert 0.78 < office < 0.93
    assert any(t.weekday() >= 5 for t in local)
    assert any(t.hour < 7 or t.hour >= 20 for t in local)
    days = Counter(t.date() for t in local)
    assert len(days) == 31


def test_month_boundary(incidents):
    end = datetime(2026, 11, 1, tzinfo=TZ)
    views = [view_as_of(x, end - timedelta(seconds=1)) for x in incidents]
    still_open = [v for v in views if v["fields"]["status"]["name"] not in
                  ("Resolved", "Closed", "Cancelled")]  # fmt: skip
    assert len(still_open) > 20
    resolved_next = [
        x for x in incidents
        if x["fields"]["resolutiondate"]
        and datetime.fromisoformat(x["fields"]["resolutiondate"]).astimezone(TZ).date()
        <= date(2026, 11, 5)
        and datetime.fromisoformat(x["fields"]["resolutiondate"]) >= end
    ]  # fmt: skip
    assert len(resolved_next) > 10


def test_histories_are_well_formed(incidents):
    for raw in incidents:
        log = raw["changelog"]
        instants = [datetime.fromisoformat(e["at"]) for e in log]
        assert all(t.tzinfo is not None for t in instants), raw["key"]
        assert all(a < b for a, b in itertools.pairwise(instants)), raw["key"]
        assert log[0] == {"at": raw["fields"]["created"], "status": "Open"}
        assert raw["fields"]["updated"] == log[-1]["at"]
        assert raw["fields"]["status"]["name"] == log[-1]["status"]
        assert set(statuses(raw)) <= STATUSES
        for a, b in itertools.pairwise(log):
            assert b["status"] in NEXT[a["status"]], (raw["key"], a, b)


def test_contacts(incidents):
    reporters = [x["fields"]["reporter"] for x in incidents]
    phones = [r["phone"] for r in reporters if r["phone"]]
    assert all(re.fullmatch(r"\+861[3-9]\d{9}", p) for p in phones)
    emails = [r["emailAddress"] for r in reporters if r["emailAddress"]]
    assert all("@" in e for e in emails)
    non_ascii = sum(1 for e in emails if not e.isascii()) / len(incidents)
    assert 0.02 < non_ascii < 0.15
    no_mail = sum(1 for r in reporters if not r["emailAddress"]) / len(incidents)
    assert 0.05 < no_mail < 0.25
    neither = sum(1 for r in reporters if not r["emailAddress"] and not r["phone"])
    assert 0.003 < neither / len(incidents) < 0.05
    names = [r["displayName"] for r in reporters]
    assert any(not n.isascii() for n in names) and any(" " in n and n[0].isascii() for n in names)


def test_customers_and_services(incidents):
    customers = Counter(x["fields"]["organization"]["name"] for x in incidents)
    services = Counter(x["fields"]["service"]["name"] for x in incidents)
    assert len(customers) == 8 and min(customers.values()) > 50
    assert any(not c.isascii() for c in customers)
    assert len(services) == 6


def test_source_sla_flags_mostly_agree_with_a_correct_computation(incidents):
    judged = disagree = breached = 0
    for raw in incidents:
        flag = raw["fields"]["sla"]["response_met"]
        if flag is None:
            continue
        log = raw["changelog"]
        spent = business_seconds(datetime.fromisoformat(log[0]["at"]),
                                 datetime.fromisoformat(log[1]["at"]))  # fmt: skip
        met = spent <= RESPONSE[raw["fields"]["priority"]["name"]]
        judged += 1
        breached += not met
        disagree += met != flag
    assert 0.04 < breached / judged < 0.20
    assert 0 < disagree / judged < 0.05


def test_view_as_of_hides_the_future(incidents):
    raw = next(x for x in incidents if len(x["changelog"]) >= 4)
    log = raw["changelog"]
    before = datetime.fromisoformat(log[0]["at"]) - timedelta(seconds=1)
    assert view_as_of(raw, before) is None
    middle = datetime.fromisoformat(log[2]["at"])
    view = view_as_of(raw, middle)
    assert view["changelog"] == log[:3]
    assert view["fields"]["status"]["name"] == log[2]["status"]
    assert view["fields"]["updated"] == log[2]["at"]
    assert raw["changelog"] == log  # the stored record is untouched
    assert view_as_of(raw, datetime.fromisoformat(log[-1]["at"])) == raw


def test_view_as_of_hides_the_resolution_verdict_until_final():
    raws = generate_incidents("test-seed", "2026-10", 2000)
    reopened = next(x for x in raws if statuses(x).count("Resolved") == 2)
    first = next(e for e in reopened["changelog"] if e["status"] == "Resolved")
    view = view_as_of(reopened, datetime.fromisoformat(first["at"]))
    assert view["fields"]["resolutiondate"] == first["at"]
    assert view["fields"]["sla"]["resolution_met"] is None
    assert reopened["fields"]["sla"]["resolution_met"] is not None


def test_a_streamed_month_is_stored_whole_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "STORE_CHUNK", 7)
    state = remote.RemoteState(tmp_path, "source", "itsm")
    try:
        stream = iter_incidents("test-seed", "2026-10", 30)
        assert not isinstance(stream, list)  # a generator: the month is never held whole
        state.store_dataset("d", stream)
        lo, hi = state.dataset_range("d") or (0, -1)
        stored = state.incidents(list(range(lo, hi + 1)))
        assert [stored[i] for i in range(lo, hi + 1)] == generate_incidents(
            "test-seed", "2026-10", 30
        )
        state.store_dataset("d", iter_incidents("test-seed", "2026-10", 30))  # stored once
        assert state.dataset_range("d") == (lo, hi)
    finally:
        state.close()


def test_marked_tickets_tells_what_each_tickets_payload_and_comments_tell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch read of complaint tickets agrees with reading each ticket on its own."""
    monkeypatch.setattr(remote, "STORE_CHUNK", 7)
    state = remote.RemoteState(tmp_path, "source", "itsm")
    mark = "customer complaint"
    try:
        rules = ["complaint", "callback_missed", "response", "complaint", "resolution"] * 130
        seqs = state.create_tickets(
            [(f"k{n}", {"rule": rule, "title": f"t{n}"}) for n, rule in enumerate(rules)], "now"
        )
        for n, seq in enumerate(seqs):
            if n % 7 == 1:
                state.comment_ticket(seq, "qloop:mark", f"this is a {mark} (n={n})", "now")
            elif n % 7 == 2:
                state.comment_ticket(seq, "qloop:other", "a Customer Complaint, other case", "now")
        one_by_one = {
            seq
            for seq in seqs
            if (state.ticket_payload(seq) or {}).get("rule") == "complaint"
            or any(mark in body for body in state.ticket_comments(seq))
        }
        asked = [*seqs, seqs[0], max(seqs) + 1000]  # a repeat and a ticket that does not exist
        got = state.marked_tickets(asked, "complaint", mark)
        assert got == one_by_one
        assert len(seqs) > 500 and 0 < len(got) < len(seqs)
    finally:
        state.close()
