"""The review queue: answers qloop would not guess, settled by a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api.auth import Permission, Principal, require
from api.problems import ApiError
from api.routes.common import (
    READ_PROBLEMS,
    Cursor,
    Id,
    Limit,
    Reader,
    RuntimeDep,
    SessionDep,
    page,
    problems,
)
from api.routes.incidents import free_text, response_out
from api.routes.schemas import (
    DismissRequest,
    MatchRequest,
    Page,
    ReviewItemOut,
    ReviewResolved,
)
from core.loop.reconcile import resolve_review
from core.runtime import Runtime
from core.store.models import Incident, Match, Response

router = APIRouter(tags=["review"], responses=READ_PROBLEMS)

Reviewer = Annotated[Principal, Depends(require(Permission.REVIEW))]


@router.get("/review", response_model=Page[ReviewItemOut])
def list_review(
    s: SessionDep, principal: Reader, limit: Limit = 50, cursor: Cursor = None
) -> Page[ReviewItemOut]:
    """Answers waiting for a person: unmatched, ambiguous or invalid."""
    rows, nxt = page(s, select(Match).where(Match.status == "review"), Match.id, limit, cursor)
    responses = {
        r.id: r
        for r in s.scalars(select(Response).where(Response.id.in_([m.response_id for m in rows])))
    }
    items = [
        ReviewItemOut(
            id=m.id,
            reason=free_text(principal, m.reason),
            candidates=[int(c) for c in m.candidates],
            decided_at=m.decided_at,
            response=response_out(responses[m.response_id], m, principal),
        )
        for m in rows
    ]
    return Page[ReviewItemOut](items=items, next_cursor=nxt)


def settle(
    rt: Runtime, item_id: int, incident_id: int | None, principal: Principal, note: str | None
) -> ReviewResolved:
    """Tie review item ``item_id`` to an incident (or dismiss it with None), audited.

    The API's routes and the QA web page's form both settle through here.

    Raises:
        ApiError: 404 unknown item, 409 already settled, 422 unknown incident.
    """
    with rt.db.sessions() as s:
        match = s.get(Match, item_id)
        if match is None:
            raise ApiError(404, f"review item {item_id} does not exist")
        if match.status != "review":
            raise ApiError(409, f"review item {item_id} is already settled ({match.status})")
        if incident_id is not None and s.get(Incident, incident_id) is None:
            raise ApiError(422, f"body.incident_id: incident {incident_id} does not exist")
    done = resolve_review(rt, item_id, incident_id, actor=principal.name, note=note)
    return ReviewResolved(
        id=done.id, status=done.status, incident_id=done.incident_id, decided_by=done.decided_by
    )


@router.post("/review/{item_id}/match", response_model=ReviewResolved, responses=problems(404, 409))
def match_item(
    item_id: Id, body: MatchRequest, rt: RuntimeDep, principal: Reviewer
) -> ReviewResolved:
    """Tie a review item to an incident (recorded in the audit log)."""
    return settle(rt, item_id, body.incident_id, principal, body.note)


@router.post(
    "/review/{item_id}/dismiss", response_model=ReviewResolved, responses=problems(404, 409)
)
def dismiss_item(
    item_id: Id, rt: RuntimeDep, principal: Reviewer, body: DismissRequest | None = None
) -> ReviewResolved:
    """Dismiss a review item: the answer belongs to no incident (recorded in the audit log)."""
    return settle(rt, item_id, None, principal, body.note if body else None)
