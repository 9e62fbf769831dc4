"""Campaign reminders, answers, top-up and the campaigns job (issue 12 item 1, LimeSurvey fake)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from core.campaign import (
    campaign_status,
    collect_answers,
    launch_campaign,
    plan_campaign,
    run_campaigns,
    send_reminders,
    top_up,
)
from core.compliance.sampling import sample_order
from core.errors import InputError, StateError
from core.loop.push import CLAIM_LEASE_S, _claim, _send
from core.store.models import Campaign, CampaignAnswer, OutboxItem
from tests.campaign.test_campaign import CSID, _members, deployment, fake  # noqa: F401
from tests.fakes.limesurvey import FakeLimeSurvey
from tests.utils.loop import Deployment


def _launched(dep: Deployment, ls: FakeLimeSurvey) -> Any:
    rt = dep.open()
    ls.now = rt.now()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    return rt


def _tids(ls: FakeLimeSurvey) -> dict[str, int]:
    return {p["attribute_1"]: int(p["tid"]) for p in ls.participants(CSID)}


def _advance(dep: Deployment, ls: FakeLimeSurvey, days: float) -> None:
    dep.clock.advance(days=days)
    ls.now = dep.clock.now


def _reminded(ls: FakeLimeSurvey) -> Counter[str]:
    return Counter(m.attributes["attribute_1"] for m in ls.mails if m.kind == "remind")


def test_reminders_go_to_non_respondents_once_per_round_across_crashes(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    rt = _launched(deployment, fake)
    sent = [m for m in _members(rt) if m.state == "sent"]
    assert len(sent) >= 5
    tids = _tids(fake)
    answerer = sent[0]
    fake.answer(CSID, tids[answerer.correlation_token], {"SAT": "8"})
    # not due before every_days (7) have passed since the invitation
    assert send_reminders(rt, "annual").enqueued == 0
    _advance(deployment, fake, 7.01)
    # crash 1: the reminders are committed, then the process dies before pushing
    first = send_reminders(rt, "annual", send=False)
    assert first.enqueued == len(sent) - 1
    # crash 2: a process sends two of them and dies before recording anything
    claimed = _claim(rt, ["campaign_remind"])
    with rt.db.session() as s:
        items = list(s.scalars(select(OutboxItem).where(OutboxItem.id.in_(claimed[:2]))))
    for item in items:
        _send(rt, item)
    fake.lose_reply("remind_participants")  # the next one is mailed, its reply lost
    deployment.clock.advance(seconds=CLAIM_LEASE_S + 1)
    other = deployment.open()
    again = send_reminders(other, "annual")
    assert again.enqueued == 0 and again.already == len(sent) - 1
    assert send_reminders(other, "annual").enqueued == 0
    waiting = {m.correlation_token for m in sent[1:]}
    assert _reminded(fake) == dict.fromkeys(waiting, 1)
    after = {m.id: m for m in _members(other)}
    assert after[answerer.id].reminders == 0 and after[answerer.id].responded_at is not None
    assert all(after[m.id].reminders == 1 and after[m.id].reminded_at for m in sent[1:])
    assert {int(p["remindercount"]) for p in fake.participants(CSID) if p["completed"] == "N"} == {
        1
    }
    # round 2 after every_days more; never a third (max 2)
    _advance(deployment, fake, 7.01)
    assert send_reminders(other, "annual").enqueued == len(sent) - 1
    _advance(deployment, fake, 7.01)
    assert send_reminders(other, "annual").enqueued == 0
    assert _reminded(fake) == dict.fromkeys(waiting, 2)
    with other.db.session() as s:
        states = Counter(
            s.scalars(select(OutboxItem.state).where(OutboxItem.kind == "campaign_remind"))
        )
    assert states == {"sent": 2 * (len(sent) - 1)}


def test_fake_remind_participants_keeps_limesurveys_limits(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    rt = _launched(deployment, fake)
    channel = rt.channel("survey-ls").for_survey(CSID)  # type: ignore[attr-defined]
    parts = sorted(fake.participants(CSID), key=lambda p: int(p["tid"]))
    tid = int(parts[0]["tid"])
    ref = f"{CSID}:{tid}"
    with pytest.raises(Exception, match="not due yet"):
        channel.remind(ref, 1, 7)  # invited today: iMinDaysBetween keeps it
    _advance(deployment, fake, 8)
    assert channel.remind(ref, 1, 7) == "reminded"
    assert channel.remind(ref, 1, 7) == "already"  # iMaxReminders = 1: no second mail
    # a bounced address is never reminded; a completed participant needs none
    bounced = int(parts[1]["tid"])
    fake.surveys[CSID].participants[bounced]["emailstatus"] = "bounced"
    with pytest.raises(Exception, match="bounced"):
        channel.remind(f"{CSID}:{bounced}", 1, 7)
    done = int(parts[2]["tid"])
    fake.answer(CSID, done, {"SAT": "9"})
    assert channel.remind(f"{CSID}:{done}", 1, 7) == "answered"
    expired = int(parts[3]["tid"])
    fake.surveys[CSID].participants[expired]["validuntil"] = "2026-01-01 00:00:00"
    with pytest.raises(Exception, match="Token not valid anymore"):
        channel.remind(f"{CSID}:{expired}", 1, 7)
    assert [m.tid for m in fake.mails if m.kind == "remind"] == [tid]


def test_answers_are_collected_once_and_tied_to_members_by_token(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    rt = _launched(deployment, fake)
    sent = [m for m in _members(rt) if m.state == "sent"]
    tids = _tids(fake)
    answers = {
        m.correlation_token: {"SAT": str(5 + i % 5), "CONF": "Y" if i % 2 else "N"}
        for i, m in enumerate(sent[:4])
    }
    for token, values in answers.items():
        fake.answer(CSID, tids[token], values)
    stranger = fake.add_participant(CSID, email="walkin@example.com", attribute_1="zzz")
    fake.answer(CSID, int(stranger["tid"]), {"SAT": "1"})
    got = collect_answers(rt, "annual")
    assert (got.responses, got.unmatched) == (4, 1)
    assert collect_answers(rt, "annual").responses == 0  # idempotent
    by_id = {m.id: m for m in sent}
    with rt.db.session() as s:
        rows = list(s.scalars(select(CampaignAnswer)))
    assert len(rows) == 4
    for row in rows:
        member = by_id[row.member_id]
        assert row.values == answers[member.correlation_token]
        assert row.submitted_at is not None
    status = campaign_status(rt, "annual", refresh=False)
    assert status.answered == 4


def test_top_up_draws_more_from_a_stratum_in_the_plans_seeded_order(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    rt = _launched(deployment, fake)
    members = _members(rt)
    strata = Counter(m.stratum for m in members if not m.picked)
    stratum = max(strata, key=lambda k: (strata[k], k))
    assert strata[stratum] >= 2
    with rt.db.session() as s:
        seed = s.scalar(select(Campaign.seed).where(Campaign.name == "annual"))
    assert seed is not None
    order = sample_order(seed, [m.person_key for m in members if m.stratum == stratum])
    picked_before = {m.person_key for m in members if m.picked}
    expected = [k for k in order if k not in picked_before][:2]
    mails = len(fake.mails)
    first = top_up(rt, "annual", stratum=stratum, count=1)
    second = top_up(rt, "annual", stratum=stratum, count=1)
    assert first.added == second.added == {stratum: 1}
    new = [m for m in _members(rt) if m.picked and m.person_key not in picked_before]
    assert sorted(m.person_key for m in new) == sorted(expected)
    assert all(m.state == "sent" for m in new)
    assert len(fake.mails) == mails + 2  # each invited once
    with pytest.raises(InputError, match="no stratum"):
        top_up(rt, "annual", stratum="nope × P9")


def test_campaigns_job_closes_a_campaign_after_its_end(
    deployment: Deployment,  # noqa: F811
    fake: FakeLimeSurvey,  # noqa: F811
) -> None:
    rt = _launched(deployment, fake)
    assert run_campaigns(rt).counts["closed"] == 0
    doc = yaml.safe_load(deployment.path.read_text("utf-8"))
    doc["campaigns"]["annual"]["ends"] = (rt.now().date() + timedelta(days=10)).isoformat()
    deployment.path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    later = deployment.open()
    _advance(deployment, fake, 8)
    waiting = send_reminders(later, "annual", send=False).enqueued  # then the process stops
    assert waiting > 0
    _advance(deployment, fake, 3)  # past ends: the job closes it, the reminders are cancelled
    done = run_campaigns(later)
    assert done.counts["closed"] == 1 and done.counts["cancelled"] == waiting
    assert not done.errors
    with later.db.session() as s:
        assert s.scalar(select(Campaign.state).where(Campaign.name == "annual")) == "closed"
        states = set(
            s.scalars(select(OutboxItem.state).where(OutboxItem.kind == "campaign_remind"))
        )
    assert states == {"cancelled"}
    assert [m for m in fake.mails if m.kind == "remind"] == []
    with pytest.raises(StateError):
        top_up(later, "annual")
    assert run_campaigns(later).counts["closed"] == 0
