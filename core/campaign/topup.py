"""``qloop campaign top-up NAME``: invite more people of a stratum below target while it runs.

For each stratum below its target (or the one named), the members of the
frame not picked yet are taken in the plan's seeded order (the order the
stratified sample took its first ``k`` from, so a top-up continues the
same draw) and the next ``n`` are picked, where ``n`` is the fewest that
would bring the stratum's response rate to ``coverage_target`` if they all
answered: ``ceil((target × invited − answered) / (1 − target))`` (at least
one), or ``count`` when given; a person the channel cannot reach is
picked (``not_surveyable``) but not counted. People already picked are
never drawn again. The new members are then invited like the others (outbox, once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select

from core.campaign.launch import Launch, launch_campaign, stored_campaign
from core.campaign.plan import STRATUM_SEP, campaign_config
from core.campaign.status import campaign_status
from core.compliance.sampling import sample_order
from core.errors import InputError, StateError
from core.loop.common import audit
from core.loop.outbox import incident_contact
from core.runtime import Runtime
from core.store.models import Campaign, CampaignMember, Incident


@dataclass(frozen=True)
class TopUp:
    """Who a top-up added per stratum, and the launch that invited them."""

    added: dict[str, int]
    launch: Launch | None


def extra_needed(invited: int, answered: int, target: float) -> int:
    """Fewest extra invitees lifting answered/invited to ``target`` if they all answer."""
    if target >= 1:
        return max(1, invited - answered)
    need = (target * invited - answered) / (1 - target)
    return max(1, math.ceil(need - 1e-9))


def top_up(
    rt: Runtime,
    name: str,
    stratum: str | None = None,
    count: int | None = None,
    actor: str = "cli",
    *,
    send: bool = True,
) -> TopUp:
    """Pick and invite more people in strata below target (see the module docstring).

    Raises:
        StateError: the campaign is not running (planned or closed).
        InputError: ``stratum`` is not one of the campaign's, or ``count`` below 1.
    """
    cfg = campaign_config(rt, name)
    stored = stored_campaign(rt, name)
    if stored.state != "launched":
        msg = f"campaign {name!r} is {stored.state}: only a running campaign is topped up"
        raise StateError(msg)
    if count is not None and count < 1:
        msg = f"top-up of {name!r}: --count must be at least 1, got {count}"
        raise InputError(msg)
    status = campaign_status(rt, name)
    rows = {st.stratum: st for st in status.strata}
    if stratum is not None and stratum not in rows:
        known = "; ".join(rows)
        msg = f"campaign {name!r} has no stratum {stratum!r} (strata: {known})"
        raise InputError(msg)
    wanted = (
        [rows[stratum]] if stratum is not None else [st for st in rows.values() if st.below_target]
    )
    channel = rt.channel(cfg.channel)
    added: dict[str, int] = {}
    picked: dict[str, int] = {}
    with rt.db.session() as s:
        campaign = s.get(Campaign, stored.id)
        assert campaign is not None
        for st in wanted:
            framed = {
                m.person_key: m
                for m in s.scalars(
                    select(CampaignMember).where(
                        CampaignMember.campaign_id == campaign.id,
                        CampaignMember.stratum == st.stratum,
                        CampaignMember.picked.is_(False),
                    )
                )
            }
            n = count if count is not None else extra_needed(st.invited, st.answered, st.target)
            taken = 0
            for key in sample_order(campaign.seed, framed):
                if taken >= n:
                    break
                member = framed[key]
                inc = s.get(Incident, member.incident_id) if member.incident_id else None
                member.picked = True
                reachable = inc is not None and channel.can_reach(incident_contact(inc))
                member.state = "planned" if reachable else "not_surveyable"
                taken += 1 if reachable else 0
                picked[st.stratum] = picked.get(st.stratum, 0) + 1
            if taken:
                added[st.stratum] = taken
        if picked:
            strata = []
            for plan in campaign.strata:
                key = STRATUM_SEP.join(plan["stratum"])
                if key in picked:
                    plan = {
                        **plan,
                        "picked": plan["picked"] + picked[key],
                        "reachable": plan.get("reachable", 0) + added.get(key, 0),
                        "topped_up": plan.get("topped_up", 0) + picked[key],
                    }
                strata.append(plan)
            campaign.strata = strata
            campaign.picked += sum(picked.values())
            audit(s, rt, "campaign.top_up", "campaign", campaign.id, actor, invited=added)
    launched = launch_campaign(rt, name, actor=actor, send=send) if added else None
    return TopUp(added=added, launch=launched)
