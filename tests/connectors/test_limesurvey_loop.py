"""A sandbox month whose surveys go through LimeSurvey (the fake server), over several runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

import connectors.limesurvey  # noqa: F401  (registers the limesurvey channel type)
from core.loop import run_once
from core.store.models import Incident, Match, Response, SurveyInvitation
from tests.fakes.limesurvey import ENDPOINT, FakeLimeSurvey
from tests.fakes.server import serve
from tests.utils.loop import Deployment, sandbox_config

SID = 246135


@pytest.fixture
def fake() -> FakeLimeSurvey:
    ls = FakeLimeSurvey(max_emails=3, server_tz="Asia/Shanghai")
    ls.add_survey(SID, ["attribute_1", "attribute_2", "attribute_3"])
    return ls


@pytest.fixture
def deployment(database_url: str, tmp_path: Path, fake: FakeLimeSurvey) -> Iterator[Deployment]:
    with serve(fake.app) as url:
        path = sandbox_config(database_url, tmp_path, incidents=36, seed="ls")
        doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
        doc["channels"]["survey-ls"] = {
            "type": "limesurvey",
            "url": url + ENDPOINT,
            "username": "qloop",
            "password": "s3cret-pass",
            "survey_id": SID,
            "server_timezone": "Asia/Shanghai",
            "batch_size": 7,
        }
        survey = doc["policies"]["default"]["survey"]
        survey["channels"] = ["survey-ls"]
        survey["sample"]["rate"] = 0.5
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
        dep = Deployment(path)
        yield dep
        dep.close()


def _invitations(rt: Any) -> list[SurveyInvitation]:
    with rt.db.session() as s:
        return list(
            s.scalars(select(SurveyInvitation).where(SurveyInvitation.channel == "survey-ls"))
        )


def test_each_sampled_invitation_reaches_limesurvey_once_and_answers_match(
    deployment: Deployment, fake: FakeLimeSurvey
) -> None:
    # a lost reply on each creating call: the outbox tries again, the channel looks first
    fake.lose_reply("add_participants")
    fake.lose_reply("invite_participants")
    fake.throttle(2, retry_after=1)
    rt = deployment.open()
    for _ in range(3):
        run_once(rt)
        deployment.clock.advance(hours=2)
        fake.now = deployment.clock.now

    invitations = _invitations(rt)
    assert len(invitations) >= 5, len(invitations)
    tokens = {inv.correlation_token for inv in invitations}
    mailed = Counter(m.attributes["attribute_1"] for m in fake.mails)
    assert set(mailed) == tokens
    assert all(n == 1 for n in mailed.values())
    assert len(fake.participants(SID)) == len(invitations)
    assert all(inv.state == "sent" and inv.provider_ref for inv in invitations)

    # two thirds of the participants answer; one stranger answers a survey qloop never sent
    parts = sorted(fake.participants(SID), key=lambda p: p["tid"])
    answered = [p for p in parts if p["tid"] % 3]
    for n, p in enumerate(answered):
        fake.answer(SID, p["tid"], {"CONF": "Y" if n % 4 else "N", "SAT": str(n % 11)})
    stranger = fake.add_participant(SID, email="walk-in@example.com", firstname="Walk-in")
    fake.answer(SID, int(stranger["tid"]), {"CONF": "Y", "SAT": "10"})

    again = deployment.open()  # another process
    for _ in range(2):
        summary = run_once(again)
        assert [e for e in summary.errors if "survey-ls" in e] == []
        deployment.clock.advance(hours=1)

    with again.db.session() as s:
        responses = list(s.scalars(select(Response).where(Response.channel == "survey-ls")))
        matches = {m.response_id: m for m in s.scalars(select(Match))}
        by_token = {
            inv.correlation_token: inv.incident_id for inv in s.scalars(select(SurveyInvitation))
        }
        incidents = {i.id for i in s.scalars(select(Incident))}
    assert len(responses) == len(answered) + 1
    for resp in responses:
        match = matches[resp.id]
        if resp.correlation_token:
            assert match.status == "matched" and match.method == "token"
            assert match.incident_id == by_token[resp.correlation_token]
            assert match.incident_id in incidents
            assert resp.score is not None and resp.scale_max == 10.0
        else:  # the stranger: not guessed, waits for a person
            assert match.status == "review"
    # nothing was mailed twice over all the runs
    assert len(fake.mails) == len(invitations)
