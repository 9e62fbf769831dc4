"""The sandbox phone/survey service: a channel whose customers answer like real ones.

On accepting a message it decides, from its seed and the message's
correlation token, what will happen (calls tried, reached or not, scores,
comments) and stores those outcomes with their simulated instants,
relative to the incident's resolution. :meth:`SandboxChannel.collect`
releases them once the connector's clock has passed them. State lives in
``<state_dir>/sandbox-channel-<name>.sqlite3``.

Callback outcomes (one ``callback_attempt`` per call tried):

========  ===========================================================
  75%     reached within 24 h (first call 0.5–20 h after resolution;
          20% of them after one failed call)
   7%     reached late, 25–60 h after (0–2 failed calls before)
   6%     never reached, 3 failed calls inside 24 h
   4%     never reached, 1–2 failed calls
   8%     nothing at all
========  ===========================================================

A reached call carries confirmed (≈90% yes), a score (on ``scale``; ≈12%
at 3 or less on 1–5), a comment (Chinese or English) and the agent.
Surveys: ≈60% answer 1–5 days after resolution with a score (and half of
them a comment); the others never answer. About 2% of outcomes come
without the correlation token (provider ref only) and 2% with neither
(only the contact); calls are placed 08:00–21:00 local time when possible.

Campaign questionnaires (:meth:`SandboxChannel.for_survey`, invitations
whose outbox key starts with ``campaign:``) are answered apart, with
reminders: see :mod:`connectors.sandbox.questionnaire`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.sandbox.generator import chinese_name
from connectors.sandbox.questionnaire import SandboxQuestionnaire
from connectors.sandbox.remote import (
    THROTTLE_OPTIONS,
    Failure,
    OutcomePlan,
    RemoteState,
    StoredMessage,
    resolve_options,
    unit,
)
from core.connector import CampaignResponse, ConnectorContext
from core.errors import ConfigError, FatalError, InputError, RetriableError
from core.records import CollectedBatch, Contact, OutboundMessage, Outcome, SendResult
from core.timeutil import iso, parse_instant, to_utc

CHANNEL_OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sandbox channel options",
    "type": "object",
    "additionalProperties": False,
    "required": ["role"],
    "properties": {
        "role": {
            "enum": ["callback", "survey"],
            "description": "callback: answers callback tasks; survey: answers survey invitations",
        },
        "contact": {"enum": ["phone", "email"], "default": "phone", "description": "for surveys"},
        "ascii_email_only": {
            "type": "boolean",
            "default": True,
            "description": "non-ASCII e-mail addresses are unreachable, as in some survey tools",
        },
        "seed": {
            "type": "string",
            "default": "qloop",
            "description": "simulation seed: same seed, same customer behaviour",
        },
        **THROTTLE_OPTIONS,
        "scale": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[min, max] score; default [1, 5], [0, 10] for phone surveys",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10000,
            "default": 500,
            "description": "outcomes returned per collect call",
        },
        "timezone": {
            "type": "string",
            "default": "Asia/Shanghai",
            "description": "zone the simulated customers live in (when they answer)",
        },
    },
}

HOUR = 3600
CAMPAIGN_KEY = "campaign:"
"""Outbox keys of campaign invitations: they go to the campaign's questionnaire."""
Fields = dict[str, Any]
_SCORES_CONFIRMED = ((0.60, 5), (0.93, 4), (0.975, 3), (0.99, 2), (1.0, 1))
_SCORES_UNCONFIRMED = ((0.15, 5), (0.40, 4), (0.70, 3), (0.88, 2), (1.0, 1))
_SCORES_SURVEY = ((0.45, 5), (0.80, 4), (0.92, 3), (0.97, 2), (1.0, 1))
_COMMENTS = {
    "good": ("工程师很专业，问题解决得很快", "非常满意，谢谢！", "Quick fix, thank you.",
             "服务态度很好", "All good now, great support."),
    "mid": ("解决了，但是等的时间有点长", "还可以", "Fixed, but it took two days.",
            "希望响应再快一点"),
    "bad": ("问题根本没有解决", "等了三天都没人联系我", "Still broken, nobody called back.",
            "The engineer closed the ticket without asking me.", "非常不满意"),
}  # fmt: skip
_NO_ANSWER = ("no_answer", "busy", "voicemail", "switched_off")


def _pick(table: tuple[tuple[float, int], ...], u: float) -> int:
    return next(score for bound, score in table if u < bound)


def _comment(rng: random.Random, score5: int) -> str:
    mood = "good" if score5 >= 4 else "mid" if score5 == 3 else "bad"
    return rng.choice(_COMMENTS[mood])


def _on_scale(rng: random.Random, score5: int, scale: tuple[float, float]) -> float:
    """A 1–5 score expressed on ``scale``.

    The value is picked so that qloop's normalisation (SPEC §10) brings it
    back into [score5, score5 + 1): "low" (< 4) means the same on every scale.
    """
    lo, hi = scale
    norm = [(v, 1 + (v - lo) * 4 / (hi - lo)) for v in range(int(lo), int(hi) + 1) if v >= lo]
    options = [v for v, n in norm if score5 <= n < score5 + 1 or (score5 == 5 and n >= 5)]
    if options:
        return float(rng.choice(options))
    return round(lo + (score5 - 1) * (hi - lo) / 4, 2)


class SandboxChannel:
    """A simulated callback or survey service (see module docstring).

    Args:
        name: the channel's name in the configuration.
        options: see :data:`CHANNEL_OPTIONS_SCHEMA`.
        ctx: state directory and clock (the mapping is not used).
    """

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        where = f"channels.{name}"
        opts = resolve_options(CHANNEL_OPTIONS_SCHEMA, options, where)
        role, contact = opts["role"], opts["contact"]
        if role == "callback" and contact != "phone":
            msg = f"{where}.contact: a callback channel calls phones, not {contact!r}"
            raise ConfigError(msg)
        default_scale = [0, 10] if role == "survey" and contact == "phone" else [1, 5]
        lo, hi = opts.get("scale") or default_scale
        if not lo < hi:
            msg = f"{where}.scale: min must be below max, got [{lo}, {hi}]"
            raise ConfigError(msg)
        try:
            self._tz: tzinfo = ZoneInfo(opts["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"{where}.timezone: unknown time zone {opts['timezone']!r}"
            raise ConfigError(msg) from exc
        self.name = name
        self.kinds = frozenset({role})
        self.scale = (float(lo), float(hi))
        self._opts, self._ctx, self._role, self._contact = opts, ctx, role, contact
        self._what = f"sandbox {role} service"
        self._prefix = "CB" if role == "callback" else "SV"
        self._state = RemoteState(ctx.state_dir, "channel", name)
        self._questionnaires: dict[int, SandboxQuestionnaire] = {}

    def _roll(self) -> Failure | None:
        o = self._opts
        return self._state.roll(o["seed"], o["failure_rate"], self._what, o["retry_after"])

    def _address(self, contact: Contact) -> str | None:
        if self._contact == "phone":
            digits = sum(map(str.isdigit, contact.phone or ""))
            return contact.phone if digits >= 7 else None
        email = (contact.email or "").strip()
        local, at, domain = email.rpartition("@")
        if not (local and at and "." in domain):
            return None
        return None if self._opts["ascii_email_only"] and not email.isascii() else email

    def can_reach(self, contact: Contact) -> bool:
        """Phone channels need a phone number; e-mail ones an address (ASCII-only if set)."""
        return self._address(contact) is not None

    def send(self, message: OutboundMessage) -> SendResult:
        """Accept a message once per idempotency key and plan its outcomes.

        Raises:
            FatalError: wrong kind for this channel or unreachable contact (400).
            RetriableError: simulated outage; sometimes (504) after the
                message was stored, as real providers do.
        """
        if message.kind in self.kinds and message.idempotency_key.startswith(CAMPAIGN_KEY):
            return self.for_survey(0).send(message)  # a campaign without survey_id
        answer = self.send_many([message])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult | Exception]:
        """:meth:`send` for each message, stored in one write transaction of the remote.

        Each message is its own call for the simulated failures (one roll per
        message): a failed message gets its error as its answer, the others
        are stored together.
        """
        answers: list[SendResult | Exception | None] = []
        failures: dict[int, Failure] = {}
        stored: list[tuple[int, StoredMessage]] = []
        for n, message in enumerate(messages):
            if message.idempotency_key.startswith(CAMPAIGN_KEY):
                try:
                    answers.append(self.send(message))
                except (FatalError, RetriableError) as exc:
                    answers.append(exc)
                continue
            try:
                address = self._accepts(message)
            except FatalError as exc:
                answers.append(exc)
                continue
            failure = self._roll()
            if failure is not None and not failure.after_write:
                answers.append(failure.error)
                continue
            if failure is not None:
                failures[n] = failure
            answers.append(None)
            stored.append((n, self._stored(message, address)))
        refs = self._state.store_messages(
            [m for _, m in stored],
            iso(to_utc(self._ctx.clock())) or "",
            lambda seq: f"{self._prefix}-{seq:06d}",
        )
        for (n, _), ref in zip(stored, refs, strict=True):
            failure = failures.get(n)
            answers[n] = failure.error if failure is not None else SendResult(provider_ref=ref)
        return [a for a in answers if a is not None]

    def _accepts(self, message: OutboundMessage) -> str:
        """The address ``message`` goes to; FatalError (400) when it cannot be taken."""
        if message.kind not in self.kinds:
            msg = f"{self._what}: 400 cannot take a {message.kind!r} message"
            raise FatalError(msg)
        address = self._address(message.contact)
        if address is None:
            msg = f"{self._what}: 400 no usable {self._contact} for {message.incident_key}"
            raise FatalError(msg)
        return address

    def _stored(self, message: OutboundMessage, address: str) -> StoredMessage:
        """What the remote keeps of ``message``, with how its customer will answer."""
        payload = {
            "kind": message.kind,
            "token": message.correlation_token,
            "source": message.source,
            "incident": {"id": message.incident_external_id, "key": message.incident_key},
            "title": message.title,
            "priority": message.priority,
            "to": address,
            "name": message.contact.name,
            "resolved_at": iso(to_utc(message.resolved_at)),
            "due_at": iso(message.due_at),
        }
        return StoredMessage(
            message.idempotency_key,
            message.kind,
            payload,
            lambda seq, ref: self._plan(message, address, seq, ref),
        )

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """The stored result for ``idempotency_key``, or None when never accepted."""
        failure = self._roll()
        if failure is not None:
            raise failure.error
        if idempotency_key.startswith(CAMPAIGN_KEY):
            return self.for_survey(0).lookup(idempotency_key)
        ref = self._state.lookup_message(idempotency_key)
        return None if ref is None else SendResult(provider_ref=ref)

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Yield outcomes released since ``cursor`` (a release number), oldest release first."""
        if cursor is not None and not cursor.isdigit():
            msg = f"{self._what}: bad collect cursor {cursor!r}"
            raise InputError(msg)
        after = int(cursor or 0)
        first = True
        while True:
            failure = self._roll()
            if failure is not None:
                raise failure.error
            if first:
                self._state.release_due(int(to_utc(self._ctx.clock()).timestamp()))
                first = False
            rows = self._state.released_after(after, self._opts["batch_size"])
            if not rows:
                return
            after = rows[-1][0]
            yield CollectedBatch(outcomes=[_outcome(p) for _, p in rows], cursor=str(after))
            if len(rows) < self._opts["batch_size"]:
                return

    def close(self) -> None:
        """Close the state file."""
        self._state.close()

    # -- campaigns (core.connector.CampaignSurveys) ----------------------------------

    def for_survey(self, survey_id: int) -> SandboxQuestionnaire:
        """This service on a campaign's questionnaire (:mod:`connectors.sandbox.questionnaire`)."""
        if survey_id not in self._questionnaires:
            self._questionnaires[survey_id] = SandboxQuestionnaire(self, survey_id)
        return self._questionnaires[survey_id]

    def respondents(self) -> dict[str, datetime | None]:
        """Campaign respondents of the channel's own questionnaire (campaigns with no survey_id)."""
        return self.for_survey(0).respondents()

    def remind(self, provider_ref: str, round_no: int, min_days: int) -> str:
        return self.for_survey(0).remind(provider_ref, round_no, min_days)

    def campaign_responses(self) -> list[CampaignResponse]:
        return self.for_survey(0).campaign_responses()

    # -- what the customers do ---------------------------------------------------

    def _plan(self, message: OutboundMessage, address: str, seq: int, ref: str) -> OutcomePlan:
        # seeded by the idempotency key, stable across runs and processes (tokens are random)
        rng = random.Random(f"{self._opts['seed']}|{self._role}|{message.idempotency_key}")
        base = to_utc(message.resolved_at)
        contact = {"name": message.contact.name, self._contact: address}
        events = self._callback(rng, base) if self._role == "callback" else self._survey(rng, base)
        plan: OutcomePlan = []
        for n, (at, fields) in enumerate(events):
            event_id = "evt_" + format(int(unit(self.name, seq, n) * 2**60), "015x")
            strip = rng.random()
            outcome = {
                "provider_event_id": event_id,
                "kind": "callback_attempt" if self._role == "callback" else "survey_answer",
                "occurred_at": iso(at),
                "correlation_token": None if strip < 0.04 else message.correlation_token,
                "provider_ref": None if strip < 0.02 else ref,
                "contact": contact,
                "scale": list(self.scale),
                **fields,
            }
            plan.append((event_id, int(at.timestamp()), _with_raw(outcome)))
        return plan

    def _at(self, rng: random.Random, base: datetime, lo_h: float, hi_h: float) -> datetime:
        """An instant lo–hi hours after ``base``, preferably 08:00–21:00 local time."""
        for _ in range(6):
            at = base + timedelta(seconds=int(rng.uniform(lo_h, hi_h) * HOUR))
            if 8 <= at.astimezone(self._tz).hour < 21:
                break
        return at

    def _callback(self, rng: random.Random, base: datetime) -> list[tuple[datetime, Fields]]:
        u = rng.random()
        failed: list[datetime] = []
        reached: datetime | None = None
        if u < 0.75:
            if rng.random() < 0.20:
                failed = [self._at(rng, base, 0.5, 16)]
                reached = min(self._at(rng, failed[0], 0.5, 4), base + timedelta(hours=23.9))
            else:
                reached = self._at(rng, base, 0.5, 20)
        elif u < 0.82:
            failed = sorted(self._at(rng, base, 1, 23) for _ in range(rng.randint(0, 2)))
            reached = self._at(rng, base, 25, 60)
        elif u < 0.88:
            failed = sorted(self._at(rng, base, 0.5, 23.5) for _ in range(3))
        elif u < 0.92:
            failed = sorted(self._at(rng, base, 0.5, 30) for _ in range(rng.randint(1, 2)))
        agent = chinese_name(rng)[0]
        events: list[tuple[datetime, Fields]] = [
            (at, {"reached": False, "agent": agent, "result": rng.choice(_NO_ANSWER)})
            for at in failed
        ]
        if reached is not None:
            reached = max([reached, *(f + timedelta(minutes=5) for f in failed)])
            confirmed = rng.random() < 0.90
            score5 = _pick(_SCORES_CONFIRMED if confirmed else _SCORES_UNCONFIRMED, rng.random())
            fields: Fields = {
                "reached": True,
                "confirmed": confirmed,
                "score": _on_scale(rng, score5, self.scale),
                "comment": _comment(rng, score5) if score5 <= 3 or rng.random() < 0.6 else None,
                "agent": agent,
                "result": "answered",
            }
            events.append((reached, fields))
        return events

    def _survey(self, rng: random.Random, base: datetime) -> list[tuple[datetime, Fields]]:
        if rng.random() >= 0.60:
            return []
        at = base + timedelta(seconds=int(rng.uniform(24, 120) * HOUR))
        score5 = _pick(_SCORES_SURVEY, rng.random())
        comment = _comment(rng, score5) if rng.random() < 0.5 else None
        fields = {"score": _on_scale(rng, score5, self.scale), "comment": comment}
        return [(at, {**fields, "result": "completed"})]


_TEXT = json.JSONEncoder(ensure_ascii=False).encode


def _with_raw(outcome: Fields) -> str:
    """The stored text of ``outcome`` with a copy of itself as its ``raw`` (last key).

    The same text as ``json.dumps({**outcome, "raw": dict(outcome)}, ensure_ascii=False)``,
    the outcome encoded once instead of twice.
    """
    text = _TEXT(outcome)
    return f'{text[:-1]}, "raw": {text}}}'


def _outcome(payload: dict[str, Any]) -> Outcome:
    contact = payload.get("contact") or {}
    return Outcome(
        provider_event_id=payload["provider_event_id"],
        kind=payload["kind"],
        occurred_at=parse_instant(payload["occurred_at"]).astimezone(UTC),
        correlation_token=payload.get("correlation_token"),
        provider_ref=payload.get("provider_ref"),
        contact=Contact(contact.get("name"), contact.get("phone"), contact.get("email")),
        reached=payload.get("reached"),
        confirmed=payload.get("confirmed"),
        score=payload.get("score"),
        scale=(float(payload["scale"][0]), float(payload["scale"][1])),
        comment=payload.get("comment"),
        agent=payload.get("agent"),
        raw=payload.get("raw") or {},
    )
