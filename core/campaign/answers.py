"""A campaign's answers: who completed the questionnaire, and their responses, stored once.

:func:`collect_answers` asks the channel which participants completed
(``respondents``, by correlation token: their ``responded_at``) and for the
complete responses (``campaign_responses``), ties each response to its
member by correlation token and stores it as a :class:`CampaignAnswer`
(question code → answer code) once per response id: collecting again adds
only new responses. A response whose token matches no member of the
campaign (a participant added by hand) is counted and left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from core.campaign.launch import stored_campaign
from core.campaign.plan import campaign_config, questionnaire
from core.connector import CampaignSurveys
from core.loop._bulk import insert_rows
from core.loop.common import audit
from core.runtime import Runtime
from core.store.models import Campaign, CampaignAnswer, CampaignMember


@dataclass(frozen=True)
class Collected:
    """What a collection stored: new respondents, new responses, responses of no member."""

    respondents: int
    responses: int
    unmatched: int


def _survey(rt: Runtime, campaign: Campaign) -> CampaignSurveys | None:
    channel = rt.channel(campaign.channel)
    if not isinstance(channel, CampaignSurveys):
        return None
    survey = channel.for_survey(campaign.survey_id) if campaign.survey_id else channel
    return survey if isinstance(survey, CampaignSurveys) else None


def refresh_answers(rt: Runtime, campaign: Campaign) -> int:
    """Record which invited members answered, from the channel; returns how many are new."""
    survey = _survey(rt, campaign)
    if survey is None:
        return 0
    done = rt.call(survey.respondents)
    now = rt.now()
    fresh = 0
    with rt.db.session() as s:
        for member in s.scalars(
            select(CampaignMember).where(
                CampaignMember.campaign_id == campaign.id,
                CampaignMember.picked.is_(True),
                CampaignMember.responded_at.is_(None),
            )
        ):
            if member.correlation_token in done:
                member.responded_at = done[member.correlation_token] or now
                fresh += 1
    return fresh


def collect_answers(rt: Runtime, name: str) -> Collected:
    """Refresh the respondents and store the new responses of campaign ``name``."""
    campaign = stored_campaign(rt, name)
    if campaign.state == "planned":
        return Collected(0, 0, 0)
    fresh = refresh_answers(rt, campaign)
    survey = _survey(rt, campaign)
    if survey is None:
        return Collected(fresh, 0, 0)
    responses = rt.call(survey.campaign_responses)
    now = rt.now()
    mapping = questionnaire(campaign_config(rt, name))
    with rt.db.session() as s:
        if campaign.questionnaire != mapping:
            s.execute(
                update(Campaign).where(Campaign.id == campaign.id).values(questionnaire=mapping)
            )
        members = {
            token: (mid, responded)
            for mid, token, responded in s.execute(
                select(
                    CampaignMember.id,
                    CampaignMember.correlation_token,
                    CampaignMember.responded_at,
                ).where(CampaignMember.campaign_id == campaign.id, CampaignMember.picked.is_(True))
            )
        }
        seen = set(
            s.scalars(
                select(CampaignAnswer.response_id).where(CampaignAnswer.campaign_id == campaign.id)
            )
        )
        rows = []
        unmatched = 0
        answered: dict[int, object] = {}
        for resp in sorted(responses, key=lambda r: r.response_id):
            if resp.response_id in seen:
                continue
            found = members.get(resp.correlation_token)
            if found is None:
                unmatched += 1
                continue
            seen.add(resp.response_id)
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "member_id": found[0],
                    "response_id": resp.response_id,
                    "submitted_at": resp.submitted_at,
                    "values": dict(sorted(resp.values.items())),
                    "collected_at": now,
                }
            )
            if found[1] is None:
                answered[found[0]] = resp.submitted_at or now
        insert_rows(s, CampaignAnswer, rows)
        for mid, when in answered.items():
            member = s.get(CampaignMember, mid)
            if member is not None and member.responded_at is None:
                member.responded_at = when  # type: ignore[assignment]
        if rows:
            audit(s, rt, "campaign.collect", "campaign", campaign.id, "qloop", responses=len(rows))
    return Collected(fresh, len(rows), unmatched)
