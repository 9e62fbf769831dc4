"""A campaign's questionnaire on the sandbox survey service (issue 12 item 1).

:meth:`SandboxChannel.for_survey` gives this view of the channel on one
questionnaire. Inviting a participant (``send``, once per idempotency key)
decides from the channel's seed and the key what the person will do:

========  ==============================================================
  40%     answers 6–96 h after the invitation
  25%     answers only after the first reminder (2–72 h after it)
   7%     answers only after the second reminder
  28%     never answers
========  ==============================================================

An answer carries ``SAT`` (on the channel's scale), ``CONF`` (``Y`` ≈ 90%,
else ``N``) and, for about 40%, a ``COMMENT`` (one in ten with a phone
number, as customers write them). Reminders keep LimeSurvey's rules: a
participant is reminded at most once per round (``remindercount`` below
the round), not before ``min_days`` after the last mail, never after
answering. Nothing of this goes through :meth:`SandboxChannel.collect`:
the campaign reads it with ``respondents`` and ``campaign_responses``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.connector import CampaignResponse
from core.errors import FatalError, RetriableError
from core.records import OutboundMessage, SendResult
from core.timeutil import to_utc

if TYPE_CHECKING:
    from connectors.sandbox.channel import SandboxChannel

HOUR = 3600
_BEHAVIOUR = ((0.40, 0), (0.65, 1), (0.72, 2))
"""(cumulative share, after how many reminders the person answers)."""
_SCORES = ((0.40, 5), (0.78, 4), (0.90, 3), (0.96, 2), (1.0, 1))
_COMMENTS = (
    "工程师很专业，问题解决得很快",
    "希望响应再快一点",
    "Quick fix, thank you.",
    "等了三天都没人联系我",
    "Good service overall, but the portal is slow.",
)


class SandboxQuestionnaire:
    """The sandbox survey service on questionnaire ``survey_id`` (see module docstring)."""

    def __init__(self, channel: SandboxChannel, survey_id: int) -> None:
        self.channel = channel
        self.survey_id = survey_id
        self.name = channel.name
        self.kinds = channel.kinds

    def _now(self) -> int:
        return int(to_utc(self.channel._ctx.clock()).timestamp())

    def _ref(self, seq: int) -> str:
        return f"CS-{self.survey_id}:{seq}"

    def can_reach(self, contact: Any) -> bool:
        return self.channel.can_reach(contact)

    def _plan(self, key: str) -> dict[str, Any]:
        rng = random.Random(f"{self.channel._opts['seed']}|campaign|{key}")
        u = rng.random()
        after = next((n for bound, n in _BEHAVIOUR if u < bound), None)
        delay = int(rng.uniform(6, 96) * HOUR) if after == 0 else int(rng.uniform(2, 72) * HOUR)
        pick = rng.random()
        score5 = next(s for bound, s in _SCORES if pick < bound)
        lo, hi = self.channel.scale
        values = {
            "SAT": str(round(lo + (score5 - 1) * (hi - lo) / 4)),
            "CONF": "Y" if rng.random() < 0.9 else "N",
        }
        if rng.random() < 0.4:
            comment = rng.choice(_COMMENTS)
            if rng.random() < 0.1:
                comment += f" 请回电 1{rng.randint(3, 9)}{rng.randint(0, 99999999):09d}"
            values["COMMENT"] = comment
        return {"after": after, "delay_s": delay, "values": values}

    def send(self, message: OutboundMessage) -> SendResult:
        """Add the participant and mail the invitation, once per idempotency key."""
        if self.channel._address(message.contact) is None:
            msg = f"sandbox questionnaire {self.survey_id}: 400 no usable contact"
            raise FatalError(msg)
        key = message.idempotency_key
        seq = self.channel._state.add_participant(
            self.survey_id, key, message.correlation_token, self._now(), self._plan(key)
        )
        return SendResult(provider_ref=self._ref(seq))

    def lookup(self, idempotency_key: str) -> SendResult | None:
        seq = self.channel._state.participant_seq(idempotency_key)
        return None if seq is None else SendResult(provider_ref=self._ref(seq))

    @staticmethod
    def _answered_ts(part: dict[str, Any]) -> int | None:
        after, reminded = part["plan"]["after"], part["reminded"]
        if after is None:
            return None
        base = (
            part["invited_ts"]
            if after == 0
            else (reminded[after - 1] if len(reminded) >= after else None)
        )
        return None if base is None else base + int(part["plan"]["delay_s"])

    def _done(self) -> list[tuple[dict[str, Any], int]]:
        now = self._now()
        out = []
        for part in self.channel._state.participants(self.survey_id):
            at = self._answered_ts(part)
            if at is not None and at <= now:
                out.append((part, at))
        return out

    def respondents(self) -> dict[str, datetime | None]:
        return {p["token"]: datetime.fromtimestamp(at, UTC) for p, at in self._done()}

    def campaign_responses(self) -> list[CampaignResponse]:
        return [
            CampaignResponse(
                correlation_token=p["token"],
                response_id=f"{self.survey_id}:{p['seq']}",
                submitted_at=datetime.fromtimestamp(at, UTC),
                values=dict(p["plan"]["values"]),
            )
            for p, at in self._done()
        ]

    def remind(self, provider_ref: str, round_no: int, min_days: int) -> str:
        """Remind once per round (see module docstring)."""
        seq = int(provider_ref.rsplit(":", 1)[-1])
        found = [p for p in self.channel._state.participants(self.survey_id) if p["seq"] == seq]
        if not found:
            msg = f"sandbox questionnaire {self.survey_id}: no participant {provider_ref}"
            raise FatalError(msg)
        part, now = found[0], self._now()
        if len(part["reminded"]) >= round_no:
            return "already"
        answered = self._answered_ts(part)
        if answered is not None and answered <= now:
            return "answered"
        last = part["reminded"][-1] if part["reminded"] else part["invited_ts"]
        if now - last <= min_days * 24 * HOUR:
            msg = f"sandbox questionnaire {self.survey_id}: reminder {round_no} not due yet"
            raise RetriableError(msg, retry_after=HOUR)
        self.channel._state.set_reminded(seq, [*part["reminded"], now])
        return "reminded"

    def for_survey(self, survey_id: int) -> SandboxQuestionnaire:
        return self.channel.for_survey(survey_id)

    def close(self) -> None:
        """The channel owns the state."""
