"""Survey campaigns (R3, issue 12 item 1): list, status, plan, launch, close, results report.

Reading (``GET``) needs ``read``; planning, launching and closing need
``campaigns`` (admin only). An unknown campaign is a 404, a campaign in the
wrong state (launch before planning, anything after closing) a 409, a
channel failure a 502, all as problem details. The results report is
rendered from the stored facts (the same facts give the same bytes), with
comments masked unless the caller may see contact details, and is
audit-logged like an export.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel
from sqlalchemy import select
from starlette.responses import Response

from api.auth import Permission, Principal, require
from api.problems import ApiError
from api.routes.common import READ_PROBLEMS, Reader, RuntimeDep, SessionDep, problems
from core.campaign import (
    campaign_status,
    close_campaign,
    launch_campaign,
    plan_campaign,
)
from core.campaign.results import campaign_results
from core.loop.common import audit
from core.report.build import default_lang
from core.report.campaign import render_results
from core.report.model import MEDIA_TYPES
from core.runtime import Runtime
from core.store.models import Campaign

router = APIRouter(tags=["campaigns"], responses={**READ_PROBLEMS, **problems(404)})
Admin = Annotated[Principal, Depends(require(Permission.CAMPAIGNS))]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]


class CampaignSummary(BaseModel):
    name: str
    configured: bool
    state: str
    """``not_planned``, ``planned``, ``launched`` or ``closed``."""
    planned_at: datetime | None
    launched_at: datetime | None
    closed_at: datetime | None
    frame_size: int | None
    picked: int | None


class StratumOut(BaseModel):
    stratum: str
    size: int
    invited: int
    answered: int
    response_rate: float
    coverage: float
    target: float
    below_target: bool


class CampaignStatusOut(BaseModel):
    name: str
    state: str
    invited: int
    answered: int
    strata: list[StratumOut]


class LaunchOut(BaseModel):
    name: str
    enqueued: int
    already: int
    sent: dict[str, int]


class CloseOut(BaseModel):
    name: str
    cancelled: int


def _known(rt: Runtime, name: str, *, stored_ok: bool = False) -> None:
    """404 for a name neither configured nor stored; 409 for one only stored (unless ok)."""
    with rt.db.session() as s:
        stored = s.scalar(select(Campaign.id).where(Campaign.name == name))
    if name not in rt.config.campaigns and stored is None:
        raise ApiError(404, f"unknown campaign {name!r}")
    if name not in rt.config.campaigns and not stored_ok:
        raise ApiError(409, f"campaign {name!r} is no longer configured", slug="state")


@router.get("/campaigns", response_model=list[CampaignSummary])
def list_campaigns(rt: RuntimeDep, s: SessionDep, _: Reader) -> list[CampaignSummary]:
    """The configured campaigns and the stored ones, by name, with their state."""
    stored = {c.name: c for c in s.scalars(select(Campaign))}
    out = []
    for name in sorted(set(stored) | set(rt.config.campaigns)):
        c = stored.get(name)
        out.append(
            CampaignSummary(
                name=name,
                configured=name in rt.config.campaigns,
                state=c.state if c else "not_planned",
                planned_at=c.planned_at if c else None,
                launched_at=c.launched_at if c else None,
                closed_at=c.closed_at if c else None,
                frame_size=c.frame_size if c else None,
                picked=c.picked if c else None,
            )
        )
    return out


@router.get("/campaigns/{name}", response_model=CampaignStatusOut, responses=problems(409, 502))
def get_campaign(
    name: Name,
    rt: RuntimeDep,
    _: Reader,
    refresh: Annotated[
        bool, Query(description="Ask the channel for new answers first (default: stored only)")
    ] = False,
) -> CampaignStatusOut:
    """Response rate and coverage per stratum, strata below target flagged."""
    _known(rt, name)
    status = campaign_status(rt, name, refresh=refresh)
    return CampaignStatusOut(
        name=status.name,
        state=status.state,
        invited=status.invited,
        answered=status.answered,
        strata=[
            StratumOut(
                stratum=st.stratum,
                size=st.size,
                invited=st.invited,
                answered=st.answered,
                response_rate=st.response_rate,
                coverage=st.coverage,
                target=st.target,
                below_target=st.below_target,
            )
            for st in status.strata
        ],
    )


@router.post("/campaigns/{name}/plan", response_model=CampaignSummary, responses=problems(409, 502))
def plan(name: Name, rt: RuntimeDep, principal: Admin) -> CampaignSummary:
    """Build the frame and draw the sample (again before launch: same people); sends nothing."""
    _known(rt, name)
    c = plan_campaign(rt, name, actor=principal.name)
    return CampaignSummary(
        name=c.name,
        configured=True,
        state=c.state,
        planned_at=c.planned_at,
        launched_at=c.launched_at,
        closed_at=c.closed_at,
        frame_size=c.frame_size,
        picked=c.picked,
    )


@router.post("/campaigns/{name}/launch", response_model=LaunchOut, responses=problems(409, 502))
def launch(name: Name, rt: RuntimeDep, principal: Admin) -> LaunchOut:
    """Invite the planned people through the outbox, each once (safe to repeat)."""
    _known(rt, name)
    done = launch_campaign(rt, name, actor=principal.name)
    return LaunchOut(
        name=name, enqueued=done.enqueued, already=done.already, sent=dict(done.push.counts)
    )


@router.post("/campaigns/{name}/close", response_model=CloseOut, responses=problems(409))
def close(name: Name, rt: RuntimeDep, principal: Admin) -> CloseOut:
    """Close the campaign: unsent invitations and reminders are cancelled."""
    _known(rt, name)
    return CloseOut(name=name, cancelled=close_campaign(rt, name, actor=principal.name))


def _documents() -> dict[int | str, dict[str, object]]:
    content = {
        MEDIA_TYPES[f].split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
        for f in ("json", "html", "pdf", "xlsx")
    }
    return {
        200: {
            "description": "The results report as an attachment named "
            "qloop-campaign-<name>-<lang>.<format>",
            "content": content,
        }
    }


@router.get(
    "/campaigns/{name}/report",
    response_class=Response,
    responses={**_documents(), **problems(409)},
)
def report(
    name: Name,
    rt: RuntimeDep,
    s: SessionDep,
    principal: Reader,
    fmt: Annotated[
        Literal["html", "pdf", "xlsx", "json"], Query(alias="format", description="Document format")
    ] = "html",
    lang: Annotated[
        Literal["zh-CN", "en"] | None,
        Query(description="Language; default zh-CN for a CN calendar, else en"),
    ] = None,
) -> Response:
    """The campaign's results report (scores with 95% intervals, non-response, comments).

    Built from the stored facts only, so a campaign no longer configured
    still has its report.
    """
    _known(rt, name, stored_ok=True)
    language = lang or default_lang(rt, list(rt.config.policies))
    masked = not principal.sees_contacts
    results = campaign_results(s, name, masked=masked)
    body = render_results(results, fmt, language, rt.config.timezone)
    with rt.db.session() as w:
        campaign_id = w.scalar(select(Campaign.id).where(Campaign.name == name))
        audit(
            w,
            rt,
            "campaign.report",
            "campaign",
            campaign_id,
            actor=principal.name,
            format=fmt,
            lang=language,
            masked=masked,
        )
    headers = {
        "Content-Disposition": f'attachment; filename="qloop-campaign-{name}-{language}.{fmt}"'
    }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
