"""Incidents (with their whole story), callback tasks and responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from api.auth import Principal
from api.problems import ApiError
from api.routes.common import (
    READ_PROBLEMS,
    Cursor,
    Id,
    IdFilter,
    Limit,
    Month,
    Reader,
    SessionDep,
    contact,
    page,
    problems,
)
from api.routes.schemas import (
    CallbackOut,
    ComplianceOut,
    ContactOut,
    IncidentDetail,
    IncidentOut,
    MatchOut,
    NonconformityOut,
    Page,
    ResponseOut,
    StatusEventOut,
    SurveyOut,
)
from core.privacy import mask_pii_text
from core.records import Category
from core.states import CallbackState
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Match,
    Nonconformity,
    Response,
    StatusEvent,
    SurveyInvitation,
)

router = APIRouter(tags=["incidents"], responses=READ_PROBLEMS)

Text = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
"""A text filter: no NUL (PostgreSQL cannot hold one; a 422 names the parameter, not a 500)."""
CATEGORIES = tuple(c.value for c in Category)
_DERIVED = ("contact", "match")


def free_text(principal: Principal, text: str | None) -> str | None:
    """A title, comment or note: phone numbers and e-mail addresses in it masked
    unless ``principal`` may see contact details."""
    return text if principal.sees_contacts else mask_pii_text(text)


def incident_out(inc: Incident, principal: Principal) -> IncidentOut:
    data = IncidentOut.model_validate(
        {
            **{k: getattr(inc, k) for k in IncidentOut.model_fields if k != "contact"},
            "title": free_text(principal, inc.title),
            "contact": contact(
                principal, name=inc.contact_name, phone=inc.contact_phone, email=inc.contact_email
            ),
        }
    )
    return data


def match_out(match: Match, principal: Principal) -> MatchOut:
    out = MatchOut.model_validate(match)
    return out.model_copy(update={"reason": free_text(principal, out.reason)})


def response_out(resp: Response, match: Match | None, principal: Principal) -> ResponseOut:
    shown = contact(principal, name=None, phone=resp.contact_phone, email=resp.contact_email)
    return ResponseOut.model_validate(
        {
            **{k: getattr(resp, k) for k in ResponseOut.model_fields if k not in _DERIVED},
            "comment": free_text(principal, resp.comment),
            "contact": ContactOut(**shown),
            "match": match_out(match, principal) if match else None,
        }
    )


@router.get("/incidents", response_model=Page[IncidentOut])
def list_incidents(
    s: SessionDep,
    principal: Reader,
    source: Text = None,
    category: Annotated[
        str | None, Query(pattern=f"^({'|'.join(CATEGORIES)})$", description="Status category")
    ] = None,
    priority: Annotated[str | None, Query(pattern=r"^P[1-4]$")] = None,
    month: Month = None,
    key: Text = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[IncidentOut]:
    """Incidents, filtered; ``month`` is the compliance month they count in (as in exports)."""
    query = select(Incident)
    if source:
        query = query.where(Incident.source == source)
    if category:
        query = query.where(Incident.category == category)
    if priority:
        query = query.where(Incident.priority == priority)
    if key:
        query = query.where(Incident.key == key)
    if month:
        query = query.where(
            exists().where(
                ComplianceRecord.incident_id == Incident.id, ComplianceRecord.month == month
            )
        )
    rows, nxt = page(s, query, Incident.id, limit, cursor)
    return Page[IncidentOut](items=[incident_out(i, principal) for i in rows], next_cursor=nxt)


def _responses_of(s: Session, incident_id: int, principal: Principal) -> list[ResponseOut]:
    rows = s.execute(
        select(Response, Match)
        .join(Match, Match.response_id == Response.id)
        .where(Match.incident_id == incident_id)
        .order_by(Response.occurred_at, Response.id)
    )
    return [response_out(r, m, principal) for r, m in rows]


@router.get("/incidents/{incident_id}", response_model=IncidentDetail, responses=problems(404))
def get_incident(incident_id: Id, s: SessionDep, principal: Reader) -> IncidentDetail:
    """One incident with its status history, callbacks, survey, answers, compliance and NCs."""
    inc = s.get(Incident, incident_id)
    if inc is None:
        raise ApiError(404, f"incident {incident_id} does not exist")
    base = incident_out(inc, principal).model_dump()
    history = s.scalars(
        select(StatusEvent).where(StatusEvent.incident_id == inc.id).order_by(StatusEvent.seq)
    )
    callbacks = s.scalars(
        select(CallbackTask).where(CallbackTask.incident_id == inc.id).order_by(CallbackTask.id)
    )
    survey = s.scalars(select(SurveyInvitation).where(SurveyInvitation.incident_id == inc.id))
    compliance = s.scalars(
        select(ComplianceRecord)
        .where(ComplianceRecord.incident_id == inc.id)
        .order_by(ComplianceRecord.evaluated_at, ComplianceRecord.id)
    )
    ncs = s.scalars(
        select(Nonconformity).where(Nonconformity.incident_id == inc.id).order_by(Nonconformity.id)
    )
    first_survey = survey.first()
    return IncidentDetail(
        **base,
        status_history=[StatusEventOut.model_validate(e) for e in history],
        callbacks=[CallbackOut.model_validate(c) for c in callbacks],
        survey=SurveyOut.model_validate(first_survey) if first_survey else None,
        responses=_responses_of(s, inc.id, principal),
        compliance=[ComplianceOut.model_validate(c) for c in compliance],
        nonconformities=[NonconformityOut.model_validate(n) for n in ncs],
        raw=inc.raw if principal.sees_contacts else None,
    )


@router.get("/callbacks", response_model=Page[CallbackOut])
def list_callbacks(
    s: SessionDep,
    _: Reader,
    state: Annotated[CallbackState | None, Query()] = None,
    channel: Text = None,
    incident_id: IdFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CallbackOut]:
    """Callback tasks (R1), filtered by state, channel or incident."""
    query = select(CallbackTask)
    if state:
        query = query.where(CallbackTask.state == state)
    if channel:
        query = query.where(CallbackTask.channel == channel)
    if incident_id is not None:
        query = query.where(CallbackTask.incident_id == incident_id)
    rows, nxt = page(s, query, CallbackTask.id, limit, cursor)
    return Page[CallbackOut](items=[CallbackOut.model_validate(c) for c in rows], next_cursor=nxt)


@router.get("/responses", response_model=Page[ResponseOut])
def list_responses(
    s: SessionDep,
    principal: Reader,
    channel: Text = None,
    kind: Annotated[str | None, Query(pattern=r"^(callback_attempt|survey_answer)$")] = None,
    matched: Annotated[
        bool | None, Query(description="true: tied to an incident; false: in review/dismissed")
    ] = None,
    incident_id: IdFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ResponseOut]:
    """Answers received from channels, with how each was matched."""
    query = select(Response)
    if channel:
        query = query.where(Response.channel == channel)
    if kind:
        query = query.where(Response.kind == kind)
    if matched is not None:
        tied = exists().where(
            Match.response_id == Response.id,
            Match.status == "matched",
            Match.incident_id.is_not(None),
        )
        query = query.where(tied if matched else ~tied)
    if incident_id is not None:
        query = query.where(
            exists().where(Match.response_id == Response.id, Match.incident_id == incident_id)
        )
    rows, nxt = page(s, query, Response.id, limit, cursor)
    matches = {
        m.response_id: m
        for m in s.scalars(select(Match).where(Match.response_id.in_([r.id for r in rows])))
    }
    items = [response_out(r, matches.get(r.id), principal) for r in rows]
    return Page[ResponseOut](items=items, next_cursor=nxt)
