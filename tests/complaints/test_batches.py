"""Complaints raised and followed across many batches (issue 14: the steps are linear).

The steps walk incidents, nonconformities, matched answers and complaints
in batches keyed on the primary key; with batches of two, a month of a
few incidents spans several of them, so a batch boundary that skipped or
repeated a row would show as a missing or a second complaint.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from core.complaints import follow_complaints, following, raise_complaints, raising
from core.loop import run_once
from core.store.models import Complaint, Incident, Nonconformity, SourceState
from tests.complaints.test_complaint_flow import L, _complaints, _resolved
from tests.complaints.test_complaint_flow import make as make  # the fixture
from tests.utils.fixture_connectors import WORLD, attempt

FLAGGED = {1, 2, 5, 6, 7, 10}
"""Incidents ITSD-n the ITSM flags; the callbacks of all but ITSD-1 go unanswered by the
fixture channel (minor nonconformities, callback missed)."""


def _month() -> None:
    WORLD.incidents = [
        _resolved(f"ITSD-{n}", 15, labels=["complaint"] if n in FLAGGED else ["VIP"])
        for n in range(1, 11)
    ]
    WORLD.answers = {f"ITSD-{n}": [attempt(L(10, 16, 9), True, True, 5)] for n in range(1, 11)}


def test_every_flagged_incident_is_raised_once_across_batches(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raising, "BATCH", 2)
    monkeypatch.setattr(following, "BATCH", 2)
    dep = make(deadline="60bd")
    _month()
    rt = dep.open()
    wanted = {f"complaint:itsm:{n}" for n in FLAGGED}
    assert run_once(rt).errors == []
    # one run raises every flagged incident: no batch boundary skips one
    assert {c.key for c in _complaints(rt)} == wanted
    for _ in range(2):
        assert run_once(rt).errors == []
    complaints = _complaints(rt)
    assert [c.key for c in complaints if c.key in wanted] == [c.key for c in complaints]
    assert len(complaints) == len(wanted)  # once each
    for c in complaints:
        assert c.origin == "source" and c.ticket_ref is not None
        assert c.state == "acknowledged"
    assert len({c.ticket_ref for c in complaints}) == len(wanted)  # a ticket of its own each
    with rt.db.session() as s:
        cursor = s.get(SourceState, "complaints:itsm")
        assert cursor is not None and cursor.cursor is not None
    assert raise_complaints(rt).counts.total() == 0  # nothing is raised twice


def test_every_nonconformity_of_a_complaint_severity_is_raised_once_across_batches(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raising, "BATCH", 2)
    dep = make(deadline="60bd", severities=["major", "minor"])
    _month()
    rt = dep.open()
    assert run_once(rt).errors == []
    with rt.db.session() as s:
        with_nc = set(
            s.scalars(
                select(Incident.external_id).join(
                    Nonconformity, Nonconformity.incident_id == Incident.id
                )
            )
        )
    assert len(with_nc) >= 5
    complaints = _complaints(rt)
    assert {c.key for c in complaints if c.origin == "nonconformity"} == {
        f"complaint:itsm:{n}" for n in with_nc
    }  # one run raises them all
    for _ in range(2):
        assert run_once(rt).errors == []
    again = _complaints(rt)
    assert len(again) == len({c.key for c in again}) == len(with_nc | {str(n) for n in FLAGGED})
    assert raise_complaints(rt).counts.total() == 0


def test_a_ticket_that_cannot_be_read_holds_back_only_its_complaint(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(following, "BATCH", 2)
    dep = make(deadline="60bd")
    WORLD.incidents = [_resolved(f"ITSD-{n}", 15, labels=["complaint"]) for n in (1, 2, 3)]
    WORLD.answers = {f"ITSD-{n}": [attempt(L(10, 16, 9), True, True, 5)] for n in (1, 2, 3)}
    rt = dep.open()
    assert run_once(rt).errors == []
    refs = {c.key: c.ticket_ref for c in _complaints(rt)}
    assert len(refs) == len(set(refs.values())) == 3 and None not in refs.values()
    lost = refs["complaint:itsm:2"]
    assert lost is not None
    del WORLD.ticket_status[lost]  # the ITSM answers 404 for it from now on
    for ref in refs.values():
        if ref != lost:
            WORLD.ticket_status[ref] = "Closed"
    WORLD.comments = {ref: ["Root cause: x", "rectification: y"] for ref in refs.values() if ref}

    result = follow_complaints(rt)
    assert result.errors == [f"complaint complaint:itsm:2 ({lost}): no ticket {lost}"]
    with rt.db.session() as s:
        rows = {c.key: c for c in s.scalars(select(Complaint))}
    for key in ("complaint:itsm:1", "complaint:itsm:3"):
        assert rows[key].closed_at is not None and rows[key].root_cause == "x"
        assert rows[key].follow_up_token is not None
    assert rows["complaint:itsm:2"].closed_at is None
    assert rows["complaint:itsm:2"].root_cause is None
