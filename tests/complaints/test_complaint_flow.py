"""Complaints from flag to follow-up call (issue 12 item 2), on the scripted connectors.

The ITSM flags an incident (a ``labels`` field named in the mapping) or a
major nonconformity makes one; the complaint's ticket goes to the team
with a signed webhook notice; root cause and rectification are read back
from the ticket's comments; the follow-up call is planned once the ticket
is closed, exactly once (also across a crash), and its outcome is recorded
on the complaint, never as the incident's callback; past its deadline a
complaint is escalated once. Clock: 2026-11-20 UTC; incidents of October.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select

from api.console import send_complaint_notices
from core import registry
from core.complaints import follow_complaints, raise_complaints
from core.complaints.following import _Changes
from core.complaints.report import complaint_report
from core.loop import run_once
from core.records import Category as C
from core.runtime import Runtime
from core.store.models import Complaint, ComplaintEvent, Match, OutboxItem
from tests.utils.fixture_connectors import (
    OPTIONS,
    WORLD,
    FixtureChannel,
    FixtureSource,
    attempt,
    incident,
    register_fixture_types,
)
from tests.utils.loop import Deployment, fixture_config
from tests.workers.test_report_webhook import SECRET, Receiver
from tests.workers.test_report_webhook import receiver as receiver  # the fixture

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, tzinfo=UTC)
MAPPING = {
    "complaint": {
        "flag": {"field": "labels", "contains": "complaint"},
        "rectification": {
            "comment_prefix": None,  # the sandbox default's prefix, replaced by a pattern
            "comment_pattern": r"(?i)^rectification\s*[:：]\s*(.+)",
        },
    }
}
"""Over the sandbox mapping (root cause: the comment starting "Root cause:")."""


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def _resolved(key: str, day: int, **raw: Any) -> Any:
    rec = incident(
        key,
        "P3",
        L(10, day, 10),
        [
            (L(10, day, 10), C.NEW),
            (L(10, day, 10, 10), C.IN_PROGRESS),
            (L(10, day, 15), C.RESOLVED),
        ],
    )
    return replace(rec, raw=raw)


def _deployment(database_url: str, tmp_path: Path, complaints: dict[str, Any]) -> Deployment:
    register_fixture_types()
    # the scripted ITSM, with the sandbox's mapping (its complaint block) to override
    registry.register("source", "fixture-mapped", FixtureSource, {"type": "object"}, "sandbox")
    WORLD.reset()
    path = fixture_config(database_url, tmp_path, extra={"complaints": complaints})
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["sources"]["itsm"]["type"] = "fixture-mapped"
    doc["sources"]["itsm"]["mapping"] = MAPPING
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return Deployment(path)


@pytest.fixture
def make(database_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Deployment] = []

    def build(**complaints: Any) -> Deployment:
        dep = _deployment(database_url, tmp_path, complaints)
        made.append(dep)
        return dep

    yield build
    for dep in made:
        dep.close()


def _complaints(rt: Runtime) -> list[Complaint]:
    with rt.db.session() as s:
        return list(s.scalars(select(Complaint).order_by(Complaint.id)))


def _items(rt: Runtime, kind: str) -> list[OutboxItem]:
    with rt.db.session() as s:
        return list(s.scalars(select(OutboxItem).where(OutboxItem.kind == kind)))


def test_a_flagged_incident_goes_from_flag_to_follow_up_call_once(
    make: Any, receiver: Receiver
) -> None:
    secret = SECRET  # the receiver verifies with it
    url = f"http://127.0.0.1:{receiver.server_port}/complaints"
    dep = make(deadline="60bd", notify=[{"via": "webhook", "to": [url], "secret": secret}])
    receiver.now = dep.clock.now
    WORLD.incidents = [_resolved("ITSD-1", 15, labels=["VIP", "Complaint"])]
    WORLD.answers = {"ITSD-1": [attempt(L(10, 16, 9), True, True, 5)]}  # a clean callback
    rt = dep.open()

    assert run_once(rt).errors == []
    (c,) = _complaints(rt)
    assert (c.origin, c.key) == ("source", "complaint:itsm:1")
    assert "labels contains 'complaint'" in c.detail
    assert c.received_at == L(10, 15, 10)
    assert c.ticket_ref == "QA-1" and c.state == "acknowledged"  # the fixture ITSM works it
    ticket = WORLD.tickets["QA-1"]
    assert ticket.rule == "complaint" and "complaint" in ticket.labels
    assert "Root cause:" in ticket.description  # the team is told how to record it

    notices = send_complaint_notices(rt)
    assert notices is not None and notices.errors == []
    assert send_complaint_notices(rt) is not None  # again: nothing more is sent
    assert len(receiver.accepted) == 1 and receiver.refused == []
    headers, body = receiver.accepted[0]
    sent = json.loads(body)
    assert sent["type"] == "complaint.notify" and sent["ticket_ref"] == "QA-1"
    assert headers["webhook-id"]
    (c,) = _complaints(rt)
    assert c.notified_at == dep.clock.now

    # the team records root cause and rectification, then closes the ticket
    WORLD.comments["QA-1"] = [
        "Root cause: 打印驱动与新固件不兼容",
        "rectification：统一驱动版本并更新知识库",
    ]
    WORLD.ticket_status["QA-1"] = "Closed"
    follow_key = "complaint:itsm:1#follow-up"
    WORLD.answers[follow_key] = [attempt(datetime(2026, 11, 20, 6, tzinfo=UTC), True, True, 4)]
    dep.clock.advance(hours=1)
    assert run_once(rt).errors == []
    (c,) = _complaints(rt)
    assert c.root_cause == "打印驱动与新固件不兼容"
    assert c.rectification == "统一驱动版本并更新知识库"
    assert c.closed_at == dep.clock.now and c.follow_up_token is not None
    assert follow_key in WORLD.sent  # the follow-up call went to the callback channel

    dep.clock.advance(hours=1)
    for _ in range(2):  # collect the call's outcome; then nothing more happens
        assert run_once(rt).errors == []
    (c,) = _complaints(rt)
    assert c.state == "followed_up"
    assert c.follow_up_reached_at == datetime(2026, 11, 20, 6, tzinfo=UTC)
    assert c.follow_up_outcome["reached"] is True and c.follow_up_outcome["score"] == 4
    (item,) = _items(rt, "follow_up")
    assert (item.state, item.attempts, item.idempotency_key) == ("sent", 0, follow_key)
    assert WORLD.send_keys.count(follow_key) == 1  # one call to the channel, whatever ran
    assert c.escalated_at is None
    with rt.db.session() as s:
        statuses = dict(s.execute(select(Match.status, func.count()).group_by(Match.status)).all())
        kinds = list(
            s.scalars(
                select(ComplaintEvent.kind)
                .where(ComplaintEvent.complaint_id == c.id)
                .order_by(ComplaintEvent.revision)
            )
        )
    assert statuses == {"matched": 1, "follow_up": 1}  # never counted as the incident's callback
    assert kinds == [
        "received",
        "ticketed",
        "acknowledged",
        "root_cause",
        "rectified",
        "closed",
        "follow_up_planned",
        "followed_up",
    ]
    assert len(receiver.accepted) == 1

    with rt.db.session() as s:
        report = complaint_report(s, L(10, 1, 0), L(11, 1, 0), as_of=dep.clock.now)
    (row,) = report.rows
    assert report.counts["total"] == 1 and report.counts["state.followed_up"] == 1
    assert row.seconds_to("follow_up_reached_at") == int(
        (datetime(2026, 11, 20, 6, tzinfo=UTC) - L(10, 15, 10)).total_seconds()
    )
    assert report.medians["closed_at"] == row.seconds_to("closed_at")
    assert row.title == "Incident ITSD-1 打印机无法连接"


def test_a_major_nonconformity_is_a_complaint_whose_follow_up_survives_a_crash(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = make(deadline="60bd")
    WORLD.incidents = [_resolved("ITSD-2", 15)]
    # reached, but the customer says it is not solved: not_confirmed, a major nonconformity
    WORLD.answers = {"ITSD-2": [attempt(L(10, 16, 9), True, False, 4)]}
    rt = dep.open()
    assert run_once(rt).errors == []
    (c,) = _complaints(rt)
    assert c.origin == "nonconformity" and c.nonconformity_id is not None
    assert c.ticket_ref == "QA-1"  # the nonconformity's own ticket, no second one
    assert len(WORLD.tickets) == 1 and _items(rt, "complaint_ticket") == []
    assert any("customer complaint" in text for text in WORLD.comments["QA-1"])

    WORLD.ticket_status["QA-1"] = "Resolved"
    real_write = _Changes.write

    def crash(self: _Changes, s: Any) -> None:
        real_write(self, s)
        raise RuntimeError("killed before commit")

    monkeypatch.setattr(_Changes, "write", crash)
    with pytest.raises(RuntimeError, match="killed"):
        follow_complaints(rt)
    monkeypatch.setattr(_Changes, "write", real_write)
    (c,) = _complaints(rt)
    assert c.follow_up_token is None and c.closed_at is None  # nothing of it was kept
    assert _items(rt, "follow_up") == []

    rt2 = dep.open()  # another process picks up
    for _ in range(3):
        assert run_once(rt2).errors == []
        assert raise_complaints(rt2).counts.total() == 0
    (c,) = _complaints(rt2)
    assert c.closed_at is not None and c.follow_up_token is not None
    (item,) = _items(rt2, "follow_up")
    assert (item.state, item.attempts) == ("sent", 0)
    assert WORLD.send_keys.count("complaint:itsm:2#follow-up") == 1
    assert item.payload["correlation_token"] == c.follow_up_token
    assert "complaint:itsm:2#follow-up" in WORLD.sent
    assert c.root_cause is None and c.state == "closed"  # nothing recorded on the ticket
    assert len(_complaints(rt2)) == 1


def test_a_complaint_past_its_deadline_is_escalated_once(make: Any, receiver: Receiver) -> None:
    secret = SECRET
    url = f"http://127.0.0.1:{receiver.server_port}/escalate"
    dep = make(deadline="2bd", escalate=[{"via": "webhook", "to": [url], "secret": secret}])
    receiver.now = dep.clock.now
    WORLD.incidents = [_resolved("ITSD-3", 15, labels=["complaint"])]
    WORLD.answers = {"ITSD-3": [attempt(L(10, 16, 9), True, True, 5)]}
    rt = dep.open()
    for _ in range(3):
        assert run_once(rt).errors == []
        send_complaint_notices(rt)
        dep.clock.advance(hours=2)
        receiver.now = dep.clock.now
    (c,) = _complaints(rt)
    # received Thu 15 Oct 10:00; 2 working days after it: Mon 19 Oct 18:00 (Asia/Shanghai)
    assert c.deadline == L(10, 19, 18)
    assert c.escalated_at == NOW
    (item,) = _items(rt, "complaint_notice")
    assert item.payload["audience"] == "escalate" and item.state == "sent"
    assert len(receiver.accepted) == 1
    assert json.loads(receiver.accepted[0][1])["type"] == "complaint.escalate"
    with rt.db.session() as s:
        escalations = s.scalar(
            select(func.count()).where(
                ComplaintEvent.complaint_id == c.id, ComplaintEvent.kind == "escalated"
            )
        )
    assert escalations == 1


def test_without_a_complaints_block_nothing_is_a_complaint(
    database_url: str, tmp_path: Path
) -> None:
    register_fixture_types()
    WORLD.reset()
    dep = Deployment(fixture_config(database_url, tmp_path))
    try:
        WORLD.incidents = [_resolved("ITSD-4", 15, labels=["complaint"])]
        WORLD.answers = {"ITSD-4": [attempt(L(10, 16, 9), True, False, 1)]}
        rt = dep.open()
        summary = run_once(rt)
        assert summary.errors == []
        assert not any("complaint" in step.step for step, _ in summary.steps)
        assert _complaints(rt) == []
    finally:
        dep.close()


def test_an_answer_its_channel_flags_is_a_complaint(database_url: str, tmp_path: Path) -> None:
    register_fixture_types()
    WORLD.reset()
    # the scripted phone channel, with the webhook channel's mapping to add a complaint flag
    registry.register("channel", "fixture-mapped", FixtureChannel, OPTIONS, "webhook")
    path = fixture_config(database_url, tmp_path, extra={"complaints": {"deadline": "60bd"}})
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["channels"]["phone"]["type"] = "fixture-mapped"
    doc["channels"]["phone"]["mapping"] = {
        "complaint": {"flag": {"field": "answers.wants_to_complain", "equals": "yes"}}
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    dep = Deployment(path)
    try:
        WORLD.incidents = [_resolved("ITSD-5", 15), _resolved("ITSD-6", 15)]
        said = attempt(L(10, 16, 9), True, True, 5)
        WORLD.answers = {
            "ITSD-5": [replace(said, raw={"answers": {"wants_to_complain": "YES"}})],
            "ITSD-6": [replace(said, raw={"answers": {"wants_to_complain": "no"}})],
        }
        rt = dep.open()
        for _ in range(2):
            assert run_once(rt).errors == []
        (c,) = _complaints(rt)
        assert (c.origin, c.key) == ("channel", "complaint:itsm:5")
        assert c.received_at == L(10, 16, 9)  # when the customer said it
        assert c.detail == "flagged by channel phone: answers.wants_to_complain equals 'yes'"
        assert c.ticket_ref is not None and WORLD.tickets[c.ticket_ref].rule == "complaint"
    finally:
        dep.close()
