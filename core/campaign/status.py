"""``qloop campaign status|close NAME``: response rate and coverage per stratum; the close.

Status first asks the channel which of the campaign's participants
completed the questionnaire (``respondents``, by correlation token) and
records when each answered, then reports per stratum: frame size,
invited, answered, the response rate (answered / invited) and the
coverage (answered / frame size). A stratum whose response rate is
below the campaign's ``coverage_target`` (or with nobody invited) is
flagged so QA can top it up while the campaign runs.

Closing stops the campaign: invitations still waiting in the outbox are
cancelled (never sent), and launch and reminders refuse it from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from core.campaign.answers import collect_answers
from core.campaign.launch import KIND, invite_key, stored_campaign
from core.campaign.plan import STRATUM_SEP, campaign_config
from core.errors import StateError
from core.loop._bulk import chunks
from core.loop.common import audit
from core.loop.push import REMIND
from core.runtime import Runtime
from core.store.models import Campaign, CampaignMember, OutboxItem


@dataclass(frozen=True)
class StratumStatus:
    """One stratum of a running campaign."""

    stratum: str
    size: int
    invited: int
    answered: int
    target: float

    @property
    def response_rate(self) -> float:
        return self.answered / self.invited if self.invited else 0.0

    @property
    def coverage(self) -> float:
        return self.answered / self.size if self.size else 0.0

    @property
    def below_target(self) -> bool:
        return self.size > 0 and (self.invited == 0 or self.response_rate < self.target)


@dataclass(frozen=True)
class CampaignStatus:
    name: str
    state: str
    strata: tuple[StratumStatus, ...]

    @property
    def invited(self) -> int:
        return sum(s.invited for s in self.strata)

    @property
    def answered(self) -> int:
        return sum(s.answered for s in self.strata)


def campaign_status(rt: Runtime, name: str, *, refresh: bool = True) -> CampaignStatus:
    """The campaign's response rate and coverage per stratum (answers refreshed first)."""
    cfg = campaign_config(rt, name)
    campaign = stored_campaign(rt, name)
    if refresh and campaign.state != "planned":
        collect_answers(rt, name)
    counts: dict[str, list[int]] = {}
    with rt.db.session() as s:
        for stratum, state, responded in s.execute(
            select(CampaignMember.stratum, CampaignMember.state, CampaignMember.responded_at).where(
                CampaignMember.campaign_id == campaign.id
            )
        ):
            row = counts.setdefault(stratum, [0, 0, 0])
            row[0] += 1
            row[1] += 1 if state == "sent" else 0
            row[2] += 1 if responded is not None else 0
    for st in campaign.strata:  # strata of the plan with nobody left (kept for the report)
        counts.setdefault(STRATUM_SEP.join(st["stratum"]), [0, 0, 0])
    return CampaignStatus(
        name=name,
        state=campaign.state,
        strata=tuple(
            StratumStatus(
                stratum=k, size=v[0], invited=v[1], answered=v[2], target=cfg.coverage_target
            )
            for k, v in sorted(counts.items())
        ),
    )


def status_text(status: CampaignStatus) -> str:
    """The lines ``qloop campaign status`` prints."""
    lines = [
        f"campaign {status.name} ({status.state})",
        f"{'stratum':<48} {'size':>6} {'invited':>7} {'answered':>8} {'response':>8} "
        f"{'coverage':>8}",
    ]
    flagged = 0
    for st in status.strata:
        flag = f"  BELOW TARGET {st.target:.0%}" if st.below_target else ""
        flagged += 1 if st.below_target else 0
        lines.append(
            f"{st.stratum:<48} {st.size:>6} {st.invited:>7} {st.answered:>8} "
            f"{st.response_rate:>8.1%} {st.coverage:>8.1%}{flag}"
        )
    rate = status.answered / status.invited if status.invited else 0.0
    lines.append(
        f"invited {status.invited}, answered {status.answered} ({rate:.1%}); "
        f"{flagged} of {len(status.strata)} strata below target"
    )
    if flagged and status.state == "launched":
        lines.append(f"to invite more of them: qloop campaign top-up {status.name}")
    return "\n".join(lines)


def close_campaign(rt: Runtime, name: str, actor: str = "cli") -> int:
    """Close the campaign; returns how many waiting invitations and reminders were cancelled.

    Raises:
        StateError: never planned, or already closed.
    """
    stored = stored_campaign(rt, name)
    if stored.state == "closed":
        msg = f"campaign {name!r} is already closed (at {stored.closed_at})"
        raise StateError(msg)
    now = rt.now()
    with rt.db.session() as s:
        member_ids = list(
            s.scalars(
                select(CampaignMember.id).where(
                    CampaignMember.campaign_id == stored.id, CampaignMember.picked.is_(True)
                )
            )
        )
        keys = [invite_key(stored.id, m) for m in member_ids]
        cancelled = 0
        for start in range(0, len(keys), 500):
            res = s.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.kind == KIND,
                    OutboxItem.idempotency_key.in_(keys[start : start + 500]),
                    OutboxItem.state.in_(["pending", "dead"]),
                )
                .values(state="cancelled")
            )
            cancelled += int(getattr(res, "rowcount", 0) or 0)
        for chunk in chunks(member_ids):  # reminders not sent yet
            res = s.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.kind == REMIND,
                    OutboxItem.entity_id.in_(chunk),
                    OutboxItem.state.in_(["pending", "dead"]),
                )
                .values(state="cancelled")
            )
            cancelled += int(getattr(res, "rowcount", 0) or 0)
        s.execute(
            update(Campaign).where(Campaign.id == stored.id).values(state="closed", closed_at=now)
        )
        audit(s, rt, "campaign.close", "campaign", stored.id, actor, cancelled=cancelled)
    return cancelled
