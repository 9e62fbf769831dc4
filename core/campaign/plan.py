"""``qloop campaign plan NAME``: build the frame, draw the sample, store it, send nothing.

The sample is the SPEC §10 rule per stratum (round half up of rate × size
on exact decimals, seeded by the campaign's seed) raised to the campaign's
minimum per stratum (everyone in a smaller stratum). People who opted out
and people invited by another campaign within ``cool_off_days`` before
planning are left out of the frame and counted by reason. A picked person
the channel cannot reach (no usable e-mail for LimeSurvey) is stored as
``not_surveyable`` and does not count as covering their stratum.

Planning again before launch replaces the plan (same frame and seed: same
people); once launched the plan is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.campaign.frame import Person, group_people, stratum_of, window_incidents
from core.compliance import stratified_sample
from core.conf.model import CampaignConfig
from core.errors import ConfigError, StateError
from core.loop._bulk import insert_rows
from core.loop.common import audit
from core.loop.outbox import incident_contact, new_token
from core.runtime import Runtime
from core.store.models import Campaign, CampaignMember, ContactOptOut

STRATUM_SEP = " × "


@dataclass(frozen=True)
class StratumPlan:
    """One stratum of a plan: its frame size, how many are picked and reachable."""

    stratum: tuple[str, ...]
    size: int
    picked: int
    reachable: int

    @property
    def planned_rate(self) -> float:
        return self.reachable / self.size if self.size else 0.0


def campaign_config(rt: Runtime, name: str) -> CampaignConfig:
    """The configuration of campaign ``name``; an unknown name lists the known ones."""
    try:
        return rt.config.campaigns[name]
    except KeyError:
        known = ", ".join(sorted(rt.config.campaigns)) or "none defined"
        msg = f"unknown campaign {name!r} (campaigns: {known})"
        raise ConfigError(msg) from None


def questionnaire(cfg: CampaignConfig) -> dict[str, Any]:
    """The campaign's items, comment questions and previous campaign, as stored."""
    return {
        "items": [
            {
                "name": i.name,
                "question": i.question,
                "kind": "yes_no" if i.is_yes_no else "score",
                "scale": list(i.scale),
                "values": dict(sorted(i.values.items())),
                "yes_codes": sorted(i.yes_codes),
                "no_codes": sorted(i.no_codes),
            }
            for i in cfg.items
        ],
        "comments": list(cfg.comments),
        "previous": cfg.previous,
        "coverage_target": cfg.coverage_target,
    }


def _excluded_keys(
    s: Session, campaign_id: int | None, since: datetime
) -> tuple[set[str], set[str]]:
    """(opted-out keys, keys of people another campaign invited at or after ``since``)."""
    opted = set(s.scalars(select(ContactOptOut.contact_key)))
    recent: set[str] = set()
    query = select(CampaignMember.keys, CampaignMember.invited_at, CampaignMember.created_at).where(
        CampaignMember.picked.is_(True), CampaignMember.state != "not_surveyable"
    )
    if campaign_id is not None:
        query = query.where(CampaignMember.campaign_id != campaign_id)
    for keys, invited_at, created_at in s.execute(query):
        if (invited_at or created_at) >= since:
            recent.update(keys or [])
    return opted, recent


def plan_campaign(rt: Runtime, name: str, actor: str = "cli") -> Campaign:
    """Plan campaign ``name`` (see the module docstring); returns the stored plan.

    Raises:
        ConfigError: no such campaign.
        StateError: the campaign was already launched or closed.
    """
    cfg = campaign_config(rt, name)
    channel = rt.channel(cfg.channel)
    now = rt.now()
    with rt.db.session() as s:
        old = s.scalar(select(Campaign).where(Campaign.name == name))
        if old is not None and old.state != "planned":
            msg = f"campaign {name!r} is {old.state}: its plan is fixed (planned {old.planned_at})"
            raise StateError(msg)
        if old is not None:
            s.execute(delete(CampaignMember).where(CampaignMember.campaign_id == old.id))
            s.delete(old)
            s.flush()
        people, no_contact = group_people(
            window_incidents(s, cfg.window_from, cfg.window_to, rt.config.timezone)
        )
        opted, recent = _excluded_keys(s, None, now - timedelta(days=cfg.cool_off_days))
        frame: list[Person] = []
        excluded = {"no_contact": no_contact, "opted_out": 0, "cool_off": 0}
        for person in people:
            if opted.intersection(person.keys):
                excluded["opted_out"] += 1
            elif recent.intersection(person.keys):
                excluded["cool_off"] += 1
            else:
                frame.append(person)
        strata = {p.key: stratum_of(p.incident, cfg.strata) for p in frame}
        drawn = stratified_sample(strata.items(), cfg.rate, cfg.seed, minimum=cfg.min_per_stratum)
        reachable = {
            p.key
            for p in frame
            if p.key in drawn.picked and channel.can_reach(incident_contact(p.incident))
        }
        plans = [
            StratumPlan(
                stratum=r.stratum,
                size=r.size,
                picked=r.picked,
                reachable=sum(1 for k, st in strata.items() if st == r.stratum and k in reachable),
            )
            for r in drawn.strata
        ]
        campaign = Campaign(
            name=name,
            state="planned",
            channel=cfg.channel,
            survey_id=cfg.survey_id,
            seed=cfg.seed,
            rate=cfg.rate,
            min_per_stratum=cfg.min_per_stratum,
            window_from=cfg.window_from.isoformat(),
            window_to=cfg.window_to.isoformat(),
            frame_size=len(frame),
            excluded=excluded,
            picked=len(drawn.picked),
            strata=[
                {
                    "stratum": list(p.stratum),
                    "size": p.size,
                    "picked": p.picked,
                    "reachable": p.reachable,
                }
                for p in plans
            ],
            planned_at=now,
            launched_at=None,
            closed_at=None,
            questionnaire=questionnaire(cfg),
        )
        s.add(campaign)
        s.flush()
        insert_rows(
            s,
            CampaignMember,
            [_member(campaign.id, p, strata[p.key], drawn.picked, reachable, now) for p in frame],
        )
        audit(
            s,
            rt,
            "campaign.plan",
            "campaign",
            campaign.id,
            actor,
            frame=len(frame),
            picked=len(drawn.picked),
        )
        s.flush()
        s.expunge(campaign)
        return campaign


def _member(
    campaign_id: int,
    person: Person,
    stratum: tuple[str, ...],
    picked: frozenset[str],
    reachable: set[str],
    now: datetime,
) -> dict[str, Any]:
    chosen = person.key in picked
    state = "framed" if not chosen else "planned" if person.key in reachable else "not_surveyable"
    return {
        "campaign_id": campaign_id,
        "person_key": person.key,
        "keys": list(person.keys),
        "incident_id": person.incident.id,
        "incidents": person.incidents,
        "stratum": STRATUM_SEP.join(stratum),
        "picked": chosen,
        "state": state,
        "correlation_token": new_token(),
        "provider_ref": None,
        "invited_at": None,
        "reminders": 0,
        "reminded_at": None,
        "responded_at": None,
        "created_at": now,
    }


def plan_text(campaign: Campaign) -> str:
    """The plan as the lines ``qloop campaign plan`` prints: per stratum, then the totals."""
    lines = [
        f"campaign {campaign.name}: window {campaign.window_from}..{campaign.window_to}, "
        f"rate {campaign.rate}, at least {campaign.min_per_stratum} per stratum, "
        f"seed {campaign.seed!r}",
        f"{'stratum':<48} {'size':>6} {'picked':>6} {'reachable':>9} {'coverage':>8}",
    ]
    covered = 0
    for st in campaign.strata:
        rate = st["reachable"] / st["size"] if st["size"] else 0.0
        covered += 1 if st["reachable"] else 0
        lines.append(
            f"{STRATUM_SEP.join(st['stratum']):<48} {st['size']:>6} {st['picked']:>6} "
            f"{st['reachable']:>9} {rate:>8.1%}"
        )
    excluded = ", ".join(f"{k} {v}" for k, v in sorted(campaign.excluded.items()))
    lines.append(
        f"frame {campaign.frame_size} people ({excluded} left out); picked {campaign.picked}; "
        f"strata covered {covered}/{len(campaign.strata)}; nothing sent (qloop campaign launch)"
    )
    return "\n".join(lines)
