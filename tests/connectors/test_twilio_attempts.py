"""A call centre's outcome on TaskRouter: a list of dial attempts plus one wrap-up form.

The agent's record sits in the task's attributes as ``callback_outcome``:
``attempts`` (each with its time, reached, agent) and the wrap-up fields
(confirmed, score, comment). Tasks are completed weeks after the calls, so
an attempt dated by the completion event would be late.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import connectors.twilio  # noqa: F401  (registers the Twilio types)
from core.errors import InputError
from core.loop import run_once
from core.loop.collect import collect
from core.store.models import CallbackTask, ComplianceRecord, RejectedRecord
from core.store.models import Response as StoredResponse
from tests.connectors.test_twilio_taskrouter import twilio_channels
from tests.fakes.server import serve
from tests.fakes.twilio import FakeTwilio, signed
from tests.utils.loop import Deployment, sandbox_config


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[tuple[Deployment, FakeTwilio]]:
    fake = FakeTwilio()
    with serve(fake.app) as base_url:
        path = sandbox_config(
            database_url, tmp_path, incidents=30, extra={"channels": twilio_channels(base_url)}
        )
        dep = Deployment(path)
        fake.clock = dep.clock
        yield dep, fake
        dep.close()


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(fake: FakeTwilio, sid: str) -> tuple[datetime, datetime]:
    attrs = json.loads(fake.tasks[sid]["attributes"])
    resolved = datetime.fromisoformat(attrs["resolved_at"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(attrs["due_at"].replace("Z", "+00:00"))
    return resolved, due


def test_attempt_lists_with_a_wrap_up_give_the_verdicts_of_the_calls_made(
    world: tuple[Deployment, FakeTwilio],
) -> None:
    dep, fake = world
    rt = dep.open()
    assert run_once(rt).errors == []
    sids = sorted(fake.pending_tasks())
    assert len(sids) >= 6
    unreached, reached, undated = sids[:2], sids[2:4], sids[4]
    dep.clock.advance(days=3)  # the agents complete their tasks days after the calls
    for sid in unreached:  # three timely calls, nobody answered
        resolved, _ = _window(fake, sid)
        attempts = [
            {"at": _iso(resolved + timedelta(hours=h)), "reached": False, "agent": "王芳"}
            for h in (1, 4, 8)
        ]
        fake.work_task(sid, attempts, {"comment": "三次未接通"})
    for sid in reached:  # a failed call, then a conversation; the wrap-up says how it went
        resolved, _ = _window(fake, sid)
        attempts = [
            {"at": _iso(resolved + timedelta(hours=1)), "reached": "no_answer", "agent": "李雷"},
            {"at": _iso(resolved + timedelta(hours=2)), "reached": True, "agent": "王芳"},
        ]
        fake.work_task(sid, attempts, {"confirmed": "yes", "score": 4, "comment": "已解决"})
    # an attempt the call centre recorded without its time
    fake.work_task(undated, [{"reached": False, "agent": "王芳"}], {"comment": "未接通"})
    dep.clock.advance(minutes=5)
    summary = run_once(rt)

    with rt.db.session() as s:
        tasks = {t.provider_ref: t for t in s.scalars(select(CallbackTask))}
        responses = list(s.scalars(select(StoredResponse).order_by(StoredResponse.id)))
        rejected = list(s.scalars(select(RejectedRecord)))

        def verdict(sid: str) -> str | None:
            task = tasks[sid]
            row = s.scalars(
                select(ComplianceRecord)
                .where(ComplianceRecord.incident_id == task.incident_id)
                .order_by(ComplianceRecord.id.desc())
            ).first()
            assert row is not None
            return row.callback_verdict

        verdicts = {sid: verdict(sid) for sid in [*unreached, *reached, undated]}

    by_task: dict[str, list[StoredResponse]] = {}
    for r in responses:
        by_task.setdefault(str(r.provider_ref), []).append(r)
    for sid in unreached:
        assert verdicts[sid] == "unreached_ok", sid  # not "missed"
        assert [r.reached for r in by_task[sid]] == [False, False, False]
    for sid in reached:
        assert verdicts[sid] == "on_time", sid
        first, second = by_task[sid]
        assert (first.reached, first.confirmed, first.score_raw) == (False, None, None)
        assert (second.reached, second.confirmed, second.score_raw) == (True, True, 4.0)
        assert second.comment == "已解决" and second.agent == "王芳"
        resolved, _ = _window(fake, sid)
        assert second.occurred_at.replace(tzinfo=resolved.tzinfo) == resolved + timedelta(hours=2)
    # the undated attempt is a rejected record naming the field; nothing was invented for it
    assert undated not in by_task
    [rej] = rejected
    assert (rej.source, rej.key) == ("channel:phone", undated)
    assert rej.field == "callback_outcome.attempts[0].at"
    assert "callback_outcome.attempts[0].at" in rej.error and rej.resolved_at is None
    assert summary.errors == []  # the other tasks and steps went on
    again = collect(rt, "phone")  # read again in the overlap: still one rejected record
    assert again.counts["rejected"] == 0
    with rt.db.session() as s:
        assert [r.times for r in s.scalars(select(RejectedRecord))] == [1]


def test_channel_rejects_are_listed_and_resolved_when_the_record_maps(
    world: tuple[Deployment, FakeTwilio], capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main
    from core.loop import rejects

    dep, fake = world
    rt = dep.open()
    assert run_once(rt).errors == []
    undated = sorted(fake.pending_tasks())[0]
    fake.work_task(undated, [{"reached": False, "agent": "王芳"}], {"comment": "未接通"})
    dep.clock.advance(minutes=5)
    run_once(rt)
    assert main(["channels", "-c", str(dep.path), "list", "phone"]) == 0
    assert "1 rejected record(s): qloop channels rejects phone" in capsys.readouterr().out
    assert main(["channels", "-c", str(dep.path), "rejects", "phone"]) == 0
    out = capsys.readouterr().out
    assert f"channel:phone {undated} [open] field callback_outcome.attempts[0].at" in out
    assert "fix the channel's mapping" in out
    assert main(["sources", "-c", str(dep.path), "rejects"]) == 0  # a source's list: not these
    assert "no open rejected records" in capsys.readouterr().out
    assert main(["channels", "-c", str(dep.path), "rejects", "nope"]) != 0
    assert "unknown channel 'nope'; known:" in capsys.readouterr().err

    # the provider's corrected record (same task) comes back mapped: the reject is resolved
    with rt.db.session() as s:
        pending = rejects.open_keys(s, "channel:phone")
        rejects.resolve_keys(s, "channel:phone", pending, ["other", undated], rt.now())
        s.commit()
        [row] = s.scalars(select(RejectedRecord))
        assert row.resolved_at is not None and pending == set()
    assert main(["channels", "-c", str(dep.path), "rejects", "phone"]) == 0
    assert "no open rejected records" in capsys.readouterr().out


def test_a_pushed_callback_with_an_undated_attempt_is_refused_naming_the_field(
    world: tuple[Deployment, FakeTwilio],
) -> None:
    dep, fake = world
    rt = dep.open()
    assert run_once(rt).errors == []
    sid = fake.pending_tasks()[0]
    resolved, _ = _window(fake, sid)
    attempts = [
        {"at": _iso(resolved + timedelta(hours=1)), "reached": False},
        {"reached": True, "agent": "王芳"},
    ]
    callbacks = fake.work_task(sid, attempts, {"confirmed": "yes", "score": 5})
    completed = next(p for p in callbacks if p["EventType"] == "task.completed")
    url = "https://qloop.example.test/webhooks/phone"
    headers, body = signed(url, completed)
    with pytest.raises(InputError) as err:
        rt.channel("phone").receive(headers, body, url)
    assert getattr(err.value, "field", None) == "callback_outcome.attempts[1].at"
    # the wrap-up alone, with nobody reached, cannot say what the customer confirmed
    sid2 = fake.pending_tasks()[0]
    resolved2, _ = _window(fake, sid2)
    lone = [{"at": _iso(resolved2 + timedelta(hours=1)), "reached": False}]
    callbacks = fake.work_task(sid2, lone, {"confirmed": "yes", "score": 5})
    completed = next(p for p in callbacks if p["EventType"] == "task.completed")
    headers, body = signed(url, completed)
    with pytest.raises(InputError, match="no attempt reached") as err:
        rt.channel("phone").receive(headers, body, url)
    assert getattr(err.value, "field", None) == "callback_outcome.score"
