"""The sandbox channel: reachability, idempotent send, realistic answers, collect cursor."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import connectors  # noqa: F401  (registers the built-in types)
from connectors.sandbox import SandboxChannel
from core import registry
from core.connector import Channel, ConnectorContext
from core.errors import ConfigError, FatalError, InputError, RetriableError
from core.records import Contact, OutboundMessage

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(tmp_path: Path, clock: Clock, name: str = "cc", **options) -> SandboxChannel:
    ctx = ConnectorContext(state_dir=tmp_path, clock=clock)
    return SandboxChannel(name, {"role": "callback", **options}, ctx)


def message(i: int, kind: str = "callback", resolved_at: datetime = T0, **contact):
    contact = contact or {"phone": f"+86138{i:08d}", "email": f"user{i}@example.com"}
    return OutboundMessage(
        kind=kind, idempotency_key=f"{kind}-{i}", correlation_token=f"tok-{kind}-{i}",
        source="itsm", incident_external_id=str(10000 + i), incident_key=f"SBX-{i}",
        title="VPN down", priority="P3", contact=Contact(name=f"客户{i}", **contact),
        resolved_at=resolved_at, due_at=resolved_at + DAY,
    )  # fmt: skip


def collect_all(channel: SandboxChannel, cursor: str | None) -> tuple[list, str | None]:
    out = []
    for batch in channel.collect(cursor):
        out.extend(batch.outcomes)
        cursor = batch.cursor
    return out, cursor


def test_registered_and_options_validated(tmp_path):
    assert registry.get("channel", "sandbox").factory is SandboxChannel
    ctx = ConnectorContext(state_dir=tmp_path)
    with pytest.raises(ConfigError, match="role"):
        SandboxChannel("x", {}, ctx)
    with pytest.raises(ConfigError, match="contact"):
        SandboxChannel("x", {"role": "callback", "contact": "email"}, ctx)
    with pytest.raises(ConfigError, match="scale"):
        SandboxChannel("x", {"role": "survey", "scale": [5, 1]}, ctx)
    with pytest.raises(ConfigError) as err:
        SandboxChannel("x", {"role": "survey", "colour": "red"}, ctx)
    assert "colour" in str(err.value)


def test_kinds_scales_and_can_reach(tmp_path):
    clock = Clock(T0)
    call = make(tmp_path, clock)
    phone_survey = make(tmp_path, clock, "ps", role="survey")
    mail = make(tmp_path, clock, "ms", role="survey", contact="email")
    lenient = make(tmp_path, clock, "ms2", role="survey", contact="email", ascii_email_only=False)
    assert isinstance(call, Channel)
    assert call.kinds == frozenset({"callback"}) and mail.kinds == frozenset({"survey"})
    assert (call.scale, phone_survey.scale, mail.scale) == ((1, 5), (0, 10), (1, 5))
    phone_only = Contact(name="张伟", phone="+8613812345678")
    mail_only = Contact(name="Emily", email="emily.chen@example.com")
    chinese_mail = Contact(name="李娜", email="李娜@example.cn")
    assert call.can_reach(phone_only) and not call.can_reach(mail_only)
    assert phone_survey.can_reach(phone_only) and not phone_survey.can_reach(chinese_mail)
    assert mail.can_reach(mail_only) and not mail.can_reach(phone_only)
    assert not mail.can_reach(chinese_mail)  # non-ASCII refused
    assert lenient.can_reach(chinese_mail)
    assert not mail.can_reach(Contact(email="not-an-address"))
    assert not call.can_reach(Contact(phone="n/a"))
    assert not call.can_reach(Contact())
    for ch in (call, phone_survey, mail, lenient):
        ch.close()


def test_send_is_idempotent_across_instances(tmp_path):
    clock = Clock(T0)
    one, two = make(tmp_path, clock), make(tmp_path, clock)
    first = one.send(message(1))
    assert first.provider_ref == "CB-000001"
    assert one.send(message(1)) == first
    assert two.send(message(1)) == first
    assert two.lookup("callback-1") == first
    assert one.lookup("callback-2") is None
    assert two.send(message(2)).provider_ref == "CB-000002"
    clock.now = T0 + 10 * DAY
    got, _ = collect_all(one, None)
    assert {o.provider_ref for o in got} <= {"CB-000001", "CB-000002", None}
    stored = one._state.read("SELECT COUNT(*) FROM messages")[0][0]
    assert stored == 2
    one.close()
    two.close()


def test_send_refuses_unreachable_or_wrong_kind(tmp_path):
    channel = make(tmp_path, Clock(T0))
    with pytest.raises(FatalError, match="400"):
        channel.send(message(1, email="a@example.com"))
    with pytest.raises(FatalError, match="survey"):
        channel.send(message(2, kind="survey"))
    assert channel.lookup("callback-1") is None
    channel.close()


def test_callback_outcome_distribution(tmp_path):
    clock = Clock(T0 + 30 * DAY)
    channel = make(tmp_path, clock)
    n = 2000
    for i in range(n):
        channel.send(message(i, resolved_at=T0 + timedelta(minutes=7 * i)))
    outcomes, _ = collect_all(channel, None)
    by_msg = defaultdict(list)
    for o in outcomes:
        assert o.kind == "callback_attempt" and o.scale == (1.0, 5.0)
        by_msg[o.contact.phone].append(o)
    classes = defaultdict(int)
    reached, confirmed, low, stripped_token, stripped_both = 0, 0, 0, 0, 0
    for i in range(n):
        attempts = sorted(by_msg.get(f"+86138{i:08d}", []), key=lambda o: o.occurred_at)
        resolved = T0 + timedelta(minutes=7 * i)
        assert all(a.occurred_at > resolved for a in attempts)
        hit = [a for a in attempts if a.reached]
        assert len(hit) <= 1 and (not hit or hit[0] is attempts[-1])
        in_day = [a for a in attempts if a.occurred_at <= resolved + DAY]
        if hit:
            classes["on_time" if hit[0].occurred_at <= resolved + DAY else "late"] += 1
            reached += 1
            confirmed += hit[0].confirmed
            low += hit[0].score <= 3
            assert hit[0].agent and 1 <= hit[0].score <= 5
        elif len(in_day) >= 3:
            classes["unreached_ok"] += 1
        elif attempts:
            classes["unreached_few"] += 1
        else:
            classes["nothing"] += 1
        for a in attempts:
            stripped_token += a.correlation_token is None and a.provider_ref is not None
            stripped_both += a.correlation_token is None and a.provider_ref is None
    assert classes["on_time"] / n == pytest.approx(0.75, abs=0.035)
    assert classes["late"] / n == pytest.approx(0.07, abs=0.02)
    assert classes["unreached_ok"] / n == pytest.approx(0.06, abs=0.02)
    assert classes["unreached_few"] / n == pytest.approx(0.04, abs=0.015)
    assert classes["nothing"] / n == pytest.approx(0.08, abs=0.02)
    assert confirmed / reached == pytest.approx(0.90, abs=0.03)
    assert low / reached == pytest.approx(0.12, abs=0.035)
    assert stripped_token / len(outcomes) == pytest.approx(0.02, abs=0.01)
    assert stripped_both / len(outcomes) == pytest.approx(0.02, abs=0.01)
    assert any(o.comment and not o.comment.isascii() for o in outcomes)
    assert any(o.comment and o.comment.isascii() for o in outcomes)
    channel.close()


def test_same_token_same_answers(tmp_path):
    clock = Clock(T0 + 30 * DAY)
    a, b = make(tmp_path / "a", clock), make(tmp_path / "b", clock, seed="other")
    c = make(tmp_path / "c", clock)
    for ch in (a, b, c):
        for i in range(40):
            ch.send(message(i))

    def answers(ch):
        return [(o.occurred_at, o.reached, o.score) for o in collect_all(ch, None)[0]]

    assert answers(a) == answers(c) != answers(b)
    for ch in (a, b, c):
        ch.close()


def test_survey_answers(tmp_path):
    clock = Clock(T0 + 30 * DAY)
    phone = make(tmp_path, clock, "ps", role="survey")
    n = 1000
    for i in range(n):
        phone.send(message(i, kind="survey"))
    answers, _ = collect_all(phone, None)
    assert len({o.provider_event_id for o in answers}) == len(answers)
    assert len(answers) / n == pytest.approx(0.60, abs=0.04)
    for o in answers:
        assert o.kind == "survey_answer" and o.scale == (0.0, 10.0)
        assert 0 <= o.score <= 10 and o.score == int(o.score)
        assert T0 + DAY <= o.occurred_at <= T0 + 5 * DAY
    low = sum(1 for o in answers if 1 + o.score * 0.4 < 4) / len(answers)  # SPEC §10
    assert low == pytest.approx(0.20, abs=0.05)
    assert {o.score for o in answers} >= {10.0, 9.0, 8.0, 7.0}
    mail = make(tmp_path, clock, "ms", role="survey", contact="email", scale=[1, 5])
    mail.send(message(1, kind="survey"))
    with pytest.raises(FatalError):
        mail.send(message(2, kind="survey", email="李娜@example.cn"))
    phone.close()
    mail.close()


def test_collect_cursor_never_repeats_nor_skips(tmp_path):
    clock = Clock(T0)
    channel = make(tmp_path, clock, batch_size=7)
    other = make(tmp_path, clock, batch_size=7)  # another process reading the same state
    cursor, seen, sent = None, [], 0
    for step in range(120):
        clock.now = T0 + timedelta(hours=2 * step)
        for _ in range(3):  # messages keep coming, resolved a little earlier
            channel.send(message(sent, resolved_at=clock.now - timedelta(hours=sent % 30)))
            sent += 1
        reader = channel if step % 2 else other
        previous = int(cursor or 0)
        for batch in reader.collect(cursor):
            assert len(batch.outcomes) <= 7
            assert int(batch.cursor) > previous
            previous = int(batch.cursor)
            for o in batch.outcomes:
                assert o.occurred_at <= clock.now
            seen.extend(o.provider_event_id for o in batch.outcomes)
            cursor = batch.cursor
    assert len(seen) == len(set(seen))
    clock.now += 30 * DAY
    rest, _ = collect_all(channel, cursor)
    everything, _ = collect_all(channel, None)
    assert sorted(seen + [o.provider_event_id for o in rest]) == sorted(
        o.provider_event_id for o in everything)  # fmt: skip
    stored = channel._state.read("SELECT COUNT(*) FROM outcomes")[0][0]
    assert len(everything) == stored
    with pytest.raises(InputError):
        list(channel.collect("abc"))
    channel.close()
    other.close()


def test_failures_at_the_configured_rate_and_retries_succeed(tmp_path):
    clock = Clock(T0 + 30 * DAY)
    channel = make(tmp_path, clock, failure_rate=0.2)
    results, refs = [], {}
    for i in range(600):
        while True:
            try:
                refs[i] = channel.send(message(i)).provider_ref
                results.append(True)
                break
            except RetriableError as exc:
                assert "sandbox callback service" in str(exc)
                results.append(False)
    rate = results.count(False) / len(results)
    assert rate == pytest.approx(0.2, abs=0.04)
    assert not any(a is b is False for a, b in itertools.pairwise(results))
    assert sorted(refs.values()) == [f"CB-{n:06d}" for n in range(1, 601)]  # stored once each
    clean = make(tmp_path, clock, "clean", batch_size=50)
    for i in range(600):
        clean.send(message(i))
    expected = collect_all(clean, None)[0]
    flaky = make(tmp_path, clock, batch_size=50, failure_rate=0.2)  # same state, small batches
    got, cursor, failures = [], None, 0
    while True:
        try:
            for batch in flaky.collect(cursor):
                got.extend(batch.outcomes)
                cursor = batch.cursor
            break
        except RetriableError:
            failures += 1
    assert failures > 0
    assert len(got) == len({o.provider_event_id for o in got}) == len(expected)
    assert sorted((o.correlation_token or "", o.occurred_at) for o in got) == sorted(
        (o.correlation_token or "", o.occurred_at) for o in expected)  # fmt: skip
    flaky.close()
    channel.close()
    clean.close()


def test_send_many_answers_per_message_and_stores_each_key_once(tmp_path):
    clock = Clock(T0)
    channel = make(tmp_path, clock)
    before = channel.send(message(0)).provider_ref
    batch = [message(0), message(1), message(2, phone="n/a"), message(1), message(3)]
    answers = channel.send_many(batch)
    assert isinstance(answers[2], FatalError) and "400" in str(answers[2])
    refs = [a.provider_ref for a in answers if not isinstance(a, Exception)]
    assert refs[0] == before and refs[1] == refs[2] and len(set(refs)) == 3
    stored = channel._state.read("SELECT idempotency_key FROM messages ORDER BY seq")
    assert [k for (k,) in stored] == ["callback-0", "callback-1", "callback-3"]
    # the outcomes planned with a batch are those a single send plans
    clock.now = T0 + 10 * DAY
    batched, _ = collect_all(channel, None)
    alone_clock = Clock(T0)
    alone = make(tmp_path / "other", alone_clock)
    for i in (0, 1, 3):
        alone.send(message(i))
    alone_clock.now = T0 + 10 * DAY
    single, _ = collect_all(alone, None)
    assert [(o.correlation_token, o.score, o.occurred_at) for o in batched] == [
        (o.correlation_token, o.score, o.occurred_at) for o in single
    ]
    alone.close()
    channel.close()


def test_send_many_with_failures_is_retried_to_exactly_once(tmp_path):
    channel = make(tmp_path, Clock(T0), failure_rate=0.5)
    pending = [message(i) for i in range(40)]
    failures = 0
    while pending:
        answers = channel.send_many(pending)
        failures += sum(isinstance(a, RetriableError) for a in answers)
        pending = [
            m for m, a in zip(pending, answers, strict=True) if isinstance(a, RetriableError)
        ]
    assert failures > 5
    stored = channel._state.read("SELECT idempotency_key FROM messages")
    assert sorted(k for (k,) in stored) == sorted(f"callback-{i}" for i in range(40))
    channel.close()


def test_an_outcome_is_stored_as_json_dumps_writes_it_with_its_raw_copy() -> None:
    """The spliced text is byte for byte ``json.dumps`` of the outcome with its ``raw``."""
    import json

    from connectors.sandbox.channel import _with_raw

    outcome = {
        "provider_event_id": "evt_0a",
        "kind": "callback_attempt",
        "occurred_at": "2026-10-02T09:00:00+00:00",
        "correlation_token": None,
        "contact": {"name": "王芳", "phone": "+86 138 0013 8000"},
        "scale": [1.0, 5.0],
        "score": 4.0,
        "comment": '服务态度很好 "quoted"',
    }
    text = _with_raw(outcome)
    assert text == json.dumps({**outcome, "raw": dict(outcome)}, ensure_ascii=False)
    assert json.loads(text)["raw"] == outcome
