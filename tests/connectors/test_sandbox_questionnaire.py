"""The sandbox survey service on a campaign's questionnaire: answers, reminders, once each."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.sandbox.channel import SandboxChannel
from core.connector import CampaignSurveys, ConnectorContext
from core.errors import RetriableError
from core.records import Contact, OutboundMessage


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _message(n: int) -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=f"campaign:1:{n}",
        kind="survey",
        correlation_token=f"tok{n:04d}",
        incident_key=f"SBX-{n}",
        incident_external_id=str(n),
        source="itsm",
        title="t",
        priority="P3",
        contact=Contact(name="n", phone=None, email=f"p{n}@example.com"),
        resolved_at=datetime(2026, 10, 5, tzinfo=UTC),
        due_at=None,
    )


def test_some_answer_at_once_some_after_a_reminder_some_never(tmp_path: Path) -> None:
    clock = Clock()
    ctx = ConnectorContext(state_dir=tmp_path, mapping={}, clock=clock)
    channel = SandboxChannel("mail", {"role": "survey", "contact": "email", "seed": "s"}, ctx)
    assert isinstance(channel, CampaignSurveys)
    survey = channel.for_survey(900001)
    refs = {n: survey.send(_message(n)).provider_ref for n in range(200)}
    assert survey.send(_message(0)).provider_ref == refs[0]  # once per key
    assert survey.lookup("campaign:1:7") is not None and survey.lookup("campaign:1:x") is None
    assert channel.respondents() == {}  # the channel's own questionnaire is another one
    clock.now += timedelta(days=5)
    first = set(survey.respondents())
    with pytest.raises(RetriableError, match="not due"):
        survey.remind(refs[1], 1, 7)
    clock.now += timedelta(days=3)
    outcomes = Counter(
        survey.remind(refs[n], 1, 7) for n in range(200) if f"tok{n:04d}" not in first
    )
    assert survey.remind(refs[1], 1, 7) in ("already", "answered")
    clock.now += timedelta(days=4)
    later = set(survey.respondents())
    assert first < later  # more answered after the reminder
    assert 0.3 < len(first) / 200 < 0.5 and 0.55 < len(later) / 200 < 0.8
    assert outcomes["reminded"] + outcomes["answered"] == 200 - len(first)
    responses = survey.campaign_responses()
    assert {r.correlation_token for r in responses} == later
    assert all(r.values["CONF"] in ("Y", "N") and r.values["SAT"] for r in responses)
    channel.close()
