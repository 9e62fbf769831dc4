"""``qloop campaign launch NAME``: invite the planned people through the outbox, once each.

Each picked, reachable member gets one outbox item of kind
``campaign_invite`` with the idempotency key ``campaign:<id>:<member id>``
(unique in the store), committed before anything is sent; the dispatcher
then sends it with the outbox's guarantees (claim, in-doubt lookup at the
channel, retries, dead letter). Launching again only adds items for
members that have none, so a crash at any point followed by a re-launch
(or the scheduled dispatch) invites nobody twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.campaign.plan import campaign_config
from core.errors import StateError
from core.loop._bulk import chunks, insert_rows
from core.loop.common import StepResult, audit
from core.loop.outbox import message_payload, outbox_row
from core.loop.push import push
from core.runtime import Runtime
from core.store.models import Campaign, CampaignMember, Incident, OutboxItem

KIND = "campaign_invite"


def invite_key(campaign_id: int, member_id: int) -> str:
    return f"campaign:{campaign_id}:{member_id}"


@dataclass(frozen=True)
class Launch:
    """What a launch did: invitations put in the outbox now, and the push that followed."""

    enqueued: int
    already: int
    push: StepResult


def stored_campaign(rt: Runtime, name: str) -> Campaign:
    """The stored campaign ``name`` (detached); StateError when it was never planned."""
    campaign_config(rt, name)
    with rt.db.session() as s:
        campaign = s.scalar(select(Campaign).where(Campaign.name == name))
        if campaign is None:
            msg = f"campaign {name!r} has no plan yet: run qloop campaign plan {name} first"
            raise StateError(msg)
        s.expunge(campaign)
        return campaign


def launch_campaign(rt: Runtime, name: str, actor: str = "cli", *, send: bool = True) -> Launch:
    """Put the campaign's invitations in the outbox and (``send``) push them.

    Raises:
        StateError: not planned, closed, or outside its start/end dates.
    """
    cfg = campaign_config(rt, name)
    now = rt.now()
    today = now.astimezone(ZoneInfo(rt.config.timezone)).date()
    if cfg.starts is not None and today < cfg.starts:
        msg = f"campaign {name!r} starts on {cfg.starts}: nothing is sent before (today {today})"
        raise StateError(msg)
    if cfg.ends is not None and today > cfg.ends:
        msg = f"campaign {name!r} ended on {cfg.ends}: no invitation after it (today {today})"
        raise StateError(msg)
    stored = stored_campaign(rt, name)
    if stored.state == "closed":
        msg = f"campaign {name!r} is closed (at {stored.closed_at}): nothing more is sent"
        raise StateError(msg)
    with rt.db.session() as s:
        campaign = s.get(Campaign, stored.id)
        assert campaign is not None
        members = list(
            s.scalars(
                select(CampaignMember)
                .where(
                    CampaignMember.campaign_id == campaign.id,
                    CampaignMember.picked.is_(True),
                    CampaignMember.state == "planned",
                )
                .order_by(CampaignMember.id)
            )
        )
        keys = {m.id: invite_key(campaign.id, m.id) for m in members}
        existing: set[str] = set()
        for chunk in chunks(list(keys.values())):
            existing.update(
                s.scalars(
                    select(OutboxItem.idempotency_key).where(OutboxItem.idempotency_key.in_(chunk))
                )
            )
        incidents = {
            i.id: i
            for chunk in chunks([m.incident_id for m in members if m.incident_id is not None])
            for i in s.scalars(select(Incident).where(Incident.id.in_(chunk)))
        }
        rows: list[dict[str, Any]] = []
        for member in members:
            key = keys[member.id]
            if key in existing:
                continue
            inc = incidents.get(member.incident_id or 0)
            if inc is None:  # the incident was deleted since planning: no contact left
                member.state = "not_surveyable"
                continue
            payload = message_payload(
                inc,
                kind="survey",
                key=key,
                token=member.correlation_token,
                resolved_at=inc.resolved_at or inc.created_at,
                due_at=None,
            )
            payload["campaign"] = name
            if campaign.survey_id is not None:
                payload["survey_id"] = campaign.survey_id
            rows.append(
                {
                    **outbox_row(
                        key=key, kind=KIND, target=campaign.channel, payload=payload, now=now
                    ),
                    "entity_id": member.id,
                }
            )
        insert_rows(s, OutboxItem, rows)
        if campaign.state == "planned":
            campaign.state, campaign.launched_at = "launched", now
        audit(s, rt, "campaign.launch", "campaign", campaign.id, actor, enqueued=len(rows))
    result = push(rt, kinds=[KIND]) if send else StepResult("push")
    return Launch(enqueued=len(rows), already=len(existing), push=result)
