"""Survey campaigns (issue 12 item 1): plan, launch through LimeSurvey (the fake), status, close."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

import connectors.limesurvey  # noqa: F401  (registers the limesurvey channel type)
from core.campaign import (
    campaign_status,
    close_campaign,
    launch_campaign,
    plan_campaign,
)
from core.campaign.frame import contact_keys
from core.errors import StateError
from core.loop.pull import pull
from core.loop.push import CLAIM_LEASE_S, _claim, _send
from core.runtime import Runtime
from core.store.models import (
    CampaignMember,
    ContactOptOut,
    Incident,
    OutboxItem,
)
from tests.fakes.limesurvey import ENDPOINT, FakeLimeSurvey
from tests.fakes.server import serve
from tests.utils.loop import Deployment, sandbox_config

SID = 246135
CSID = 777001
"""The campaign's own questionnaire on the same LimeSurvey."""


@pytest.fixture
def fake() -> FakeLimeSurvey:
    ls = FakeLimeSurvey(max_emails=3, server_tz="Asia/Shanghai")
    ls.add_survey(SID, ["attribute_1", "attribute_2", "attribute_3"])
    ls.add_survey(CSID, ["attribute_1", "attribute_2", "attribute_3"])
    return ls


def _campaign(**over: Any) -> dict[str, Any]:
    return {
        "window": {"from": "2026-10-01", "to": "2026-10-31"},
        "channel": "survey-ls",
        "survey_id": CSID,
        "strata": ["customer", "priority"],
        "rate": 0.3,
        "min_per_stratum": 2,
        "coverage_target": 0.5,
        "cool_off_days": 60,
        "seed": "annual",
        **over,
    }


@pytest.fixture
def deployment(database_url: str, tmp_path: Path, fake: FakeLimeSurvey) -> Iterator[Deployment]:
    with serve(fake.app) as url:
        path = sandbox_config(database_url, tmp_path, incidents=60, seed="camp")
        doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
        doc["channels"]["survey-ls"] = {
            "type": "limesurvey",
            "url": url + ENDPOINT,
            "username": "qloop",
            "password": "s3cret-pass",
            "survey_id": SID,
            "server_timezone": "Asia/Shanghai",
            "key_attribute": "attribute_3",
            "batch_size": 7,
        }
        doc["campaigns"] = {"annual": _campaign(), "second": _campaign(seed="other")}
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
        dep = Deployment(path)
        rt = dep.open()
        pull(rt, "itsm")
        yield dep
        dep.close()


def _members(rt: Runtime, name: str = "annual") -> list[CampaignMember]:
    from core.store.models import Campaign

    with rt.db.session() as s:
        cid = s.scalar(select(Campaign.id).where(Campaign.name == name))
        return list(s.scalars(select(CampaignMember).where(CampaignMember.campaign_id == cid)))


def _people(rt: Runtime) -> dict[frozenset[str], list[Incident]]:
    """People of the window computed independently: connected components by shared keys."""
    with rt.db.session() as s:
        incs = [i for i in s.scalars(select(Incident)) if i.category != "cancelled"]
    groups: list[tuple[set[str], list[Incident]]] = []
    for inc in incs:
        keys = set(contact_keys(inc))
        if not keys:
            continue
        joined = [g for g in groups if g[0] & keys]
        merged: tuple[set[str], list[Incident]] = (keys, [inc])
        for g in joined:
            groups.remove(g)
            merged[0].update(g[0])
            merged[1].extend(g[1])
        groups.append(merged)
    return {frozenset(k): v for k, v in groups}


def test_plan_frames_each_person_once_and_picks_exactly_per_stratum(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    rt = deployment.open()
    campaign = plan_campaign(rt, "annual")
    members = _members(rt)
    people = _people(rt)
    assert len(members) == len(people) == campaign.frame_size
    assert len({m.person_key for m in members}) == len(members)
    # each person sits in the stratum of their latest incident
    for keys, incs in people.items():
        (member,) = [m for m in members if set(m.keys) == set(keys)]
        latest = max(incs, key=lambda i: (i.created_at, i.id))
        assert member.stratum == f"{latest.customer or '-'} × {latest.priority or '-'}"
        assert member.incidents == len(incs)
    sizes = Counter(m.stratum for m in members)
    picked = Counter(m.stratum for m in members if m.picked)
    for stratum, size in sizes.items():
        rule = int((Decimal("0.3") * size).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        assert picked[stratum] == max(rule, min(2, size)), stratum
    stored = {" × ".join(st["stratum"]): (st["size"], st["picked"]) for st in campaign.strata}
    assert stored == {k: (sizes[k], picked[k]) for k in sizes}
    # the same frame and seed draw the same people; nothing was sent
    again = plan_campaign(rt, "annual")
    assert {m.person_key for m in _members(rt) if m.picked} == {
        m.person_key for m in members if m.picked
    }
    assert again.picked == campaign.picked
    assert fake.mails == []
    with rt.db.session() as s:
        assert s.scalars(select(OutboxItem).where(OutboxItem.kind == "campaign_invite")).all() == []


def test_no_one_invited_twice_across_crashes_and_relaunches(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    rt = deployment.open()
    plan_campaign(rt, "annual")
    planned = [m for m in _members(rt) if m.state == "planned"]
    assert len(planned) >= 5
    # crash 1: the outbox items are committed, then the process dies before pushing
    first = launch_campaign(rt, "annual", send=False)
    assert first.enqueued == len(planned)
    # crash 2: a process claims the items, sends three and dies before recording anything
    claimed = _claim(rt, ["campaign_invite"])
    with rt.db.session() as s:
        items = list(s.scalars(select(OutboxItem).where(OutboxItem.id.in_(claimed[:3]))))
    for item in items:
        _send(rt, item)
    # lost replies on the creating calls of the next sends
    fake.lose_reply("add_participants")
    fake.lose_reply("invite_participants")
    deployment.clock.advance(seconds=CLAIM_LEASE_S + 1)
    other = deployment.open()  # another process re-launches, twice
    second = launch_campaign(other, "annual")
    third = launch_campaign(other, "annual")
    assert second.enqueued == third.enqueued == 0
    assert second.already == len(planned)

    mailed = Counter(m.attributes["attribute_1"] for m in fake.mails if m.sid == CSID)
    tokens = {m.correlation_token for m in planned}
    assert set(mailed) == tokens
    assert all(n == 1 for n in mailed.values()), mailed
    assert len(fake.participants(CSID)) == len(planned)
    assert fake.participants(SID) == []  # the per-incident survey is left alone
    after = {m.id: m for m in _members(other)}
    assert all(after[m.id].state == "sent" and after[m.id].invited_at for m in planned)
    with other.db.session() as s:
        states = Counter(
            s.scalars(select(OutboxItem.state).where(OutboxItem.kind == "campaign_invite"))
        )
    assert states == {"sent": len(planned)}


def test_status_counts_answers_per_stratum_and_flags_the_ones_below_target(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    rt = deployment.open()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    members = [m for m in _members(rt) if m.state == "sent"]
    by_token = {p["attribute_1"]: p for p in fake.participants(CSID)}
    strata = sorted({m.stratum for m in members})
    full = strata[0]  # everyone of the first stratum answers; nobody elsewhere
    for m in members:
        if m.stratum == full:
            fake.answer(CSID, int(by_token[m.correlation_token]["tid"]), {"SAT": "9"})
    status = campaign_status(rt, "annual")
    rows = {st.stratum: st for st in status.strata}
    answered = sum(1 for m in members if m.stratum == full)
    assert rows[full].answered == rows[full].invited == answered
    assert rows[full].response_rate == 1.0 and not rows[full].below_target
    for name in strata[1:]:
        assert rows[name].answered == 0 and rows[name].below_target
    assert status.answered == answered
    # the answers are stored: status offline reports the same
    assert campaign_status(rt, "annual", refresh=False).answered == answered


def test_close_cancels_unsent_invitations_and_refuses_more(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    rt = deployment.open()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual", send=False)
    assert close_campaign(rt, "annual") > 0
    with pytest.raises(StateError, match="closed"):
        launch_campaign(rt, "annual")
    with pytest.raises(StateError, match="closed"):
        plan_campaign(rt, "annual")
    with rt.db.session() as s:
        states = set(
            s.scalars(select(OutboxItem.state).where(OutboxItem.kind == "campaign_invite"))
        )
    assert states == {"cancelled"}
    assert fake.mails == []


def test_frame_leaves_out_opted_out_people_and_the_cool_off(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    rt = deployment.open()
    plan_campaign(rt, "annual")
    launch_campaign(rt, "annual")
    invited = {m.person_key for m in _members(rt) if m.state == "sent"}
    framed = [m for m in _members(rt) if m.person_key not in invited]
    opted = framed[0]
    with rt.db.session() as s:
        s.add(
            ContactOptOut(
                contact_key=opted.keys[-1], reason="asked", actor="t", created_at=rt.now()
            )
        )
    second = plan_campaign(rt, "second")
    keys = {m.person_key for m in _members(rt, "second")}
    assert keys.isdisjoint(invited) and opted.person_key not in keys
    assert second.excluded["cool_off"] == len(invited)
    assert second.excluded["opted_out"] == 1
    # after the cool-off the invited people are framed again
    with rt.db.session() as s:
        s.execute(
            update(CampaignMember)
            .where(CampaignMember.invited_at.is_not(None))
            .values(invited_at=rt.now() - timedelta(days=61))
        )
    assert plan_campaign(rt, "second").excluded["cool_off"] == 0


def test_launch_refuses_before_the_start_date(database_url: str, tmp_path: Path) -> None:
    path = sandbox_config(database_url, tmp_path, incidents=5, seed="x")
    doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    later = _campaign(channel="survey-mail", starts="2027-03-01")
    del later["survey_id"]
    doc["campaigns"] = {"later": later}
    path.write_text(yaml.safe_dump(doc), "utf-8")
    dep = Deployment(path)
    try:
        rt = dep.open()
        pull(rt, "itsm")
        plan_campaign(rt, "later")
        with pytest.raises(StateError, match="starts on 2027-03-01"):
            launch_campaign(rt, "later")
    finally:
        dep.close()


def test_cli_plan_prints_the_coverage_per_stratum_then_status(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main

    assert main(["campaign", "plan", "annual", "--config", str(deployment.path)]) == 0
    out = capsys.readouterr().out
    assert "nothing sent" in out and "strata covered" in out
    assert (
        main(["campaign", "status", "annual", "--offline", "--config", str(deployment.path)]) == 0
    )
    assert "BELOW TARGET" in capsys.readouterr().out  # planned, nobody invited yet
    assert main(["campaign", "launch", "nope", "--config", str(deployment.path)]) == 2
    assert "unknown campaign 'nope'" in capsys.readouterr().err
