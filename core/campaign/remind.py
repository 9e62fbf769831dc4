"""Campaign reminders: to invitees who have not answered, on the campaign's schedule.

A member is due reminder ``n`` (``n`` = reminders so far + 1, at most
``reminders.max``) when they were invited, have not answered, and their
last mail (the invitation, else the last reminder) is more than
``reminders.every_days`` old (by a minute: LimeSurvey compares minutes).
Each due reminder is one outbox item of kind ``campaign_remind`` with the
key ``campaign:<id>:<member id>:remind:<n>`` (unique in the store),
committed before anything is sent; the dispatcher sends it through the
channel's :meth:`~core.connector.CampaignSurveys.remind` (LimeSurvey
``remind_participants`` with ``iMaxReminders = n``, so the same round sent
again after a crash mails nobody twice) and then counts it on the member
(``reminders``, ``reminded_at``). Answers are refreshed first, so nobody
who answered is reminded; nothing is reminded after the campaign's
``ends`` date or once it is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.campaign.answers import collect_answers
from core.campaign.launch import stored_campaign
from core.campaign.plan import campaign_config
from core.loop._bulk import chunks, insert_rows
from core.loop.common import StepResult, audit
from core.loop.outbox import outbox_row
from core.loop.push import REMIND, push
from core.runtime import Runtime
from core.store.models import Campaign, CampaignMember, OutboxItem


def remind_key(campaign_id: int, member_id: int, round_no: int) -> str:
    return f"campaign:{campaign_id}:{member_id}:remind:{round_no}"


@dataclass(frozen=True)
class Reminders:
    """What a reminder run did: reminders put in the outbox now, and the push that followed."""

    enqueued: int
    already: int
    push: StepResult


def send_reminders(rt: Runtime, name: str, actor: str = "qloop", *, send: bool = True) -> Reminders:
    """Put the campaign's due reminders in the outbox and (``send``) push them."""
    cfg = campaign_config(rt, name)
    stored = stored_campaign(rt, name)
    now = rt.now()
    today = now.astimezone(ZoneInfo(rt.config.timezone)).date()
    if (
        stored.state != "launched"
        or cfg.reminders.max_count <= 0
        or (cfg.ends is not None and today > cfg.ends)
    ):
        return Reminders(0, 0, StepResult("push"))
    collect_answers(rt, name)
    # LimeSurvey compares minutes, strictly: a minute more keeps both clocks agreeing
    every = timedelta(days=cfg.reminders.every_days, minutes=1)
    with rt.db.session() as s:
        campaign = s.get(Campaign, stored.id)
        assert campaign is not None
        members = [
            m
            for m in s.scalars(
                select(CampaignMember)
                .where(
                    CampaignMember.campaign_id == campaign.id,
                    CampaignMember.picked.is_(True),
                    CampaignMember.state == "sent",
                    CampaignMember.responded_at.is_(None),
                    CampaignMember.provider_ref.is_not(None),
                    CampaignMember.reminders < cfg.reminders.max_count,
                )
                .order_by(CampaignMember.id)
            )
            if (m.reminded_at or m.invited_at or now) + every <= now
        ]
        keys = {m.id: remind_key(campaign.id, m.id, m.reminders + 1) for m in members}
        existing: set[str] = set()
        for chunk in chunks(list(keys.values())):
            existing.update(
                s.scalars(
                    select(OutboxItem.idempotency_key).where(OutboxItem.idempotency_key.in_(chunk))
                )
            )
        rows: list[dict[str, Any]] = []
        for member in members:
            key = keys[member.id]
            if key in existing:
                continue
            payload: dict[str, Any] = {
                "campaign": name,
                "provider_ref": member.provider_ref,
                "round": member.reminders + 1,
                "min_days": cfg.reminders.every_days,
            }
            if campaign.survey_id is not None:
                payload["survey_id"] = campaign.survey_id
            rows.append(
                {
                    **outbox_row(
                        key=key, kind=REMIND, target=campaign.channel, payload=payload, now=now
                    ),
                    "entity_id": member.id,
                }
            )
        insert_rows(s, OutboxItem, rows)
        if rows:
            audit(s, rt, "campaign.remind", "campaign", campaign.id, actor, enqueued=len(rows))
    result = push(rt, kinds=[REMIND]) if send else StepResult("push")
    return Reminders(enqueued=len(rows), already=len(existing), push=result)
