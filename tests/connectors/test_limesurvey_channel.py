"""The LimeSurvey channel against the fake RemoteControl 2 server (tests/fakes/limesurvey.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import mappings
from connectors.limesurvey import LimeSurveyChannel
from core import registry
from core.connector import Channel, ConnectorContext
from core.errors import ConfigError, FatalError, InputError, RetriableError
from core.records import Contact, OutboundMessage
from tests.fakes.limesurvey import ENDPOINT, FakeLimeSurvey
from tests.fakes.server import serve

SID = 246135
ATTRS = {"attribute_1": "qloop token", "attribute_2": "incident", "attribute_3": "qloop key"}
RESOLVED = datetime(2026, 10, 3, 8, 0, tzinfo=UTC)


@dataclass
class Env:
    fake: FakeLimeSurvey
    url: str
    tmp_path: Path
    sleeps: list[float] = field(default_factory=list)
    opened: list[LimeSurveyChannel] = field(default_factory=list)

    def channel(self, **options: Any) -> LimeSurveyChannel:
        ctx = ConnectorContext(
            state_dir=self.tmp_path,
            mapping=mappings.load("limesurvey"),
            clock=lambda: datetime(2026, 11, 1, tzinfo=UTC),
            sleep=self.sleeps.append,
        )
        opts = {
            "url": self.url + ENDPOINT,
            "username": "qloop",
            "password": "s3cret-pass",
            "survey_id": SID,
            "server_timezone": "Asia/Shanghai",
            **options,
        }
        ch = LimeSurveyChannel("ls", opts, ctx)
        self.opened.append(ch)
        return ch


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    fake = FakeLimeSurvey(max_emails=2)
    fake.add_survey(SID, ATTRS)
    with serve(fake.app) as url:
        e = Env(fake, url, tmp_path)
        yield e
        for ch in e.opened:
            ch.close()


def message(i: int, email: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        kind="survey", idempotency_key=f"survey:itsm:{10000 + i}",
        correlation_token=f"tok-{i:03d}-Ab_c-{i}", source="itsm",
        incident_external_id=str(10000 + i), incident_key=f"SUP-{i}", title="Printer down",
        priority="P3", contact=Contact(name=f"客户{i}", email=email or f"user{i}@example.com"),
        resolved_at=RESOLVED,
    )  # fmt: skip


def test_registered_type_builds_a_channel(env: Env) -> None:
    ctype = registry.get("channel", "limesurvey")
    assert ctype.mapping == "limesurvey"
    assert "survey_id" in ctype.options_schema["required"]
    ch = env.channel()
    assert isinstance(ch, Channel)
    assert ch.kinds == frozenset({"survey"})


def test_send_adds_the_participant_and_mails_the_invitation_once(env: Env) -> None:
    ch = env.channel()
    first = ch.send(message(1))
    again = ch.send(message(1))
    assert first == again and first.provider_ref == f"{SID}:1"
    [part] = env.fake.participants(SID)
    assert part["attribute_1"] == "tok-001-Ab_c-1"
    assert part["attribute_2"] == "SUP-1"
    assert part["attribute_3"] == "survey:itsm:10001"
    assert part["token"] and part["token"] != "tok-001-Ab_c-1"  # LimeSurvey's own token
    [mail] = env.fake.mails
    assert (mail.tid, mail.email) == (1, "user1@example.com")
    assert mail.attributes["attribute_2"] == "SUP-1"


@pytest.mark.parametrize("lost", ["add_participants", "invite_participants"])
def test_send_retried_after_a_lost_reply_mails_exactly_once(env: Env, lost: str) -> None:
    ch = env.channel()
    env.fake.lose_reply(lost)
    with pytest.raises(RetriableError, match=lost):
        ch.send(message(1))
    result = ch.send(message(1))
    assert result.provider_ref == f"{SID}:1"
    assert len(env.fake.participants(SID)) == 1
    assert len(env.fake.mails) == 1


def test_lookup_finds_a_participant_added_and_mailed_by_an_earlier_process(env: Env) -> None:
    env.channel().send(message(4))
    other = env.channel()  # a second process: nothing in memory
    found = other.lookup("survey:itsm:10004")
    assert found is not None and found.provider_ref == f"{SID}:1"
    assert other.lookup("survey:itsm:99999") is None


def test_lookup_of_a_participant_not_yet_mailed_lets_send_finish_the_job(env: Env) -> None:
    ch = env.channel()
    env.fake.add_participant(
        SID, email="user5@example.com", attribute_1="tok-005-Ab_c-5", attribute_2="SUP-5",
        attribute_3="survey:itsm:10005",
    )  # fmt: skip
    assert ch.lookup("survey:itsm:10005") is None
    assert ch.send(message(5)).provider_ref == f"{SID}:1"
    assert len(env.fake.participants(SID)) == 1 and len(env.fake.mails) == 1
    assert ch.lookup("survey:itsm:10005") is not None


def test_lookup_without_a_key_attribute_is_not_supported(env: Env) -> None:
    ctx = ConnectorContext(
        state_dir=env.tmp_path,
        mapping={**mappings.load("limesurvey"), "participant": {
            "correlation_attribute": "attribute_1", "incident_attribute": "attribute_2"}},
    )  # fmt: skip
    ch = LimeSurveyChannel(
        "ls", {"url": env.url + ENDPOINT, "username": "qloop", "password": "s3cret-pass",
               "survey_id": SID}, ctx)  # fmt: skip
    env.opened.append(ch)
    with pytest.raises(NotImplementedError):
        ch.lookup("survey:itsm:1")
    assert ch.send(message(1)).provider_ref == f"{SID}:1"


def test_missing_participant_attribute_is_a_fatal_error_naming_it(env: Env) -> None:
    env.fake.surveys[SID].attributes.pop("attribute_3")
    ch = env.channel()
    with pytest.raises(FatalError, match="no participant attribute attribute_3"):
        ch.send(message(1))
    assert env.fake.participants(SID) == [] and env.fake.mails == []


def test_attribute_dropped_on_add_is_caught_from_the_saved_row(env: Env) -> None:
    """Old servers whose attribute descriptions cannot be read: the saved row tells."""
    ch = env.channel(key_attribute="attribute_9")
    ch._ready = True  # as if the survey check had been inconclusive
    with pytest.raises(FatalError, match="dropped participant attribute attribute_9"):
        ch.send(message(1))
    assert env.fake.mails == []


def test_anonymized_survey_is_refused(env: Env) -> None:
    env.fake.surveys[SID].anonymized = "Y"
    with pytest.raises(FatalError, match="anonymized"):
        env.channel().send(message(1))


def test_bad_credentials_are_fatal(env: Env) -> None:
    with pytest.raises(FatalError, match="Invalid user name or password") as err:
        env.channel(password="wrong-one").send(message(1))
    assert "wrong-one" not in str(err.value)


def test_unknown_survey_is_fatal(env: Env) -> None:
    with pytest.raises(FatalError, match="Invalid survey ID"):
        env.channel(survey_id=999).send(message(1))


def test_invalid_email_refused_by_limesurvey_is_fatal(env: Env) -> None:
    ch = env.channel(ascii_email_only=False)
    with pytest.raises(FatalError, match="Invalid email address"):
        ch.send(message(1, email="bad@@example.com"))


def test_expired_session_is_renewed_transparently(env: Env) -> None:
    ch = env.channel()
    ch.send(message(1))
    env.fake.expire_sessions()
    ch.send(message(2))
    assert env.fake.calls.count("get_session_key") == 2
    assert len(env.fake.mails) == 2


def test_rate_limit_bursts_are_waited_out_on_the_injected_sleep(env: Env) -> None:
    ch = env.channel()
    env.fake.throttle(2, retry_after=2)
    ch.send(message(1))
    assert env.sleeps == [2.0, 2.0]
    assert len(env.fake.mails) == 1


def test_invite_loops_over_the_per_call_cap(env: Env) -> None:
    ch = env.channel()
    for i in range(5):
        ch.ensure_ready()
        ch._add(message(i), f"user{i}@example.com")
    assert ch.invite([1, 2, 3, 4, 5]) == 5
    assert env.fake.calls.count("invite_participants") == 3  # 2 + 2 + 1
    assert sorted(m.tid for m in env.fake.mails) == [1, 2, 3, 4, 5]
    assert ch.invite([1, 2, 3, 4, 5]) == 0  # nobody is mailed twice


def test_can_reach_needs_a_usable_email(env: Env) -> None:
    ch = env.channel()
    assert ch.can_reach(Contact(email="jane@example.com"))
    assert not ch.can_reach(Contact(phone="+8613800000000"))
    assert not ch.can_reach(Contact(email="张三@例子.中国"))
    assert not ch.can_reach(Contact(email="not-an-address"))
    assert env.channel(ascii_email_only=False).can_reach(Contact(email="张三@例子.中国"))


def test_collect_maps_answers_and_resumes_after_its_cursor(env: Env) -> None:
    ch = env.channel()
    for i in (1, 2, 3):
        ch.send(message(i))
    at = datetime(2026, 10, 4, 2, 12, 41, tzinfo=UTC)
    env.fake.answer(SID, 1, {"CONF": "Y", "SAT": "9", "COMMENT": "很好"}, submitted=at)
    env.fake.answer(
        SID, 2, {"CONF": "N", "SAT": "3", "COMMENT": ""}, submitted=at + timedelta(hours=1)
    )
    batches = list(ch.collect(None))
    outcomes = [o for b in batches for o in b.outcomes]
    by_token = {o.correlation_token: o for o in outcomes}
    assert set(by_token) == {"tok-001-Ab_c-1", "tok-002-Ab_c-2"}
    one = by_token["tok-001-Ab_c-1"]
    assert (one.confirmed, one.score, one.scale, one.comment) == (True, 9.0, (0.0, 10.0), "很好")
    assert one.occurred_at == at  # Shanghai-local export read back as UTC
    assert one.provider_event_id == f"{SID}:1" and one.provider_ref == f"{SID}:1"
    assert one.contact is not None and one.contact.email == "user1@example.com"
    two = by_token["tok-002-Ab_c-2"]
    assert (two.confirmed, two.score, two.comment) == (False, 3.0, None)
    cursor = batches[-1].cursor
    assert cursor is not None and '"since":"2026-10-04 11:12"' in cursor

    # nothing new: the same poll again only repeats what is at the cursor's minute
    again = [o for b in ch.collect(cursor) for o in b.outcomes]
    assert {o.provider_event_id for o in again} <= {o.provider_event_id for o in outcomes}

    env.fake.answer(SID, 3, {"CONF": "Y", "SAT": "10"}, submitted=at + timedelta(days=1))
    later = [o for b in ch.collect(cursor) for o in b.outcomes]
    assert "tok-003-Ab_c-3" in {o.correlation_token for o in later}
    assert "tok-001-Ab_c-1" not in {o.correlation_token for o in later}


def test_collect_pages_through_many_participants(env: Env) -> None:
    ch = env.channel(batch_size=2)
    for i in range(1, 6):
        ch.send(message(i))
        env.fake.answer(SID, i, {"SAT": str(i)})
    outcomes = [o for b in ch.collect(None) for o in b.outcomes]
    assert sorted(o.score for o in outcomes if o.score is not None) == [1, 2, 3, 4, 5]


def test_collect_with_no_answers_yields_nothing(env: Env) -> None:
    ch = env.channel()
    ch.send(message(1))
    assert list(ch.collect(None)) == []


def test_bad_cursor_is_an_input_error(env: Env) -> None:
    with pytest.raises(InputError, match="bad collect cursor"):
        list(env.channel().collect("not json"))


def test_close_releases_the_session_key(env: Env) -> None:
    ch = env.channel()
    ch.send(message(1))
    assert env.fake.sessions
    ch.close()
    assert not env.fake.sessions


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"survey_id": "abc"}, "channels.ls.survey_id"),
        ({"correlation_attribute": "email"}, "channels.ls.correlation_attribute"),
        ({"server_timezone": "Mars/Base"}, "channels.ls.server_timezone"),
        ({"incident_attribute": "attribute_1"}, "must differ"),
    ],
    ids=["survey_id", "attribute", "timezone", "same"],
)
def test_bad_options_are_config_errors_naming_the_option(
    env: Env, options: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError) as err:
        env.channel(**options)
    assert where in str(err.value)
    assert "s3cret-pass" not in str(err.value)
