"""Nonconformities (R5) and their rectification tickets (R6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Select, exists, select

from api.auth import Principal
from api.routes.common import READ_PROBLEMS, Cursor, Limit, Month, Reader, SessionDep, page
from api.routes.incidents import free_text
from api.routes.schemas import NonconformityOut, Page
from core.states import NcState, Rule, Severity
from core.store.models import ComplianceRecord, Nonconformity

router = APIRouter(tags=["nonconformities"], responses=READ_PROBLEMS)


def nc_query(
    *,
    rule: str | None = None,
    severity: str | None = None,
    state: str | None = None,
    month: str | None = None,
    overdue: bool | None = None,
) -> Select[Any]:
    """Nonconformities filtered; ``month`` is their incident's compliance month.

    The API's list and the QA web page's table both filter through here.
    """
    query = select(Nonconformity)
    if rule:
        query = query.where(Nonconformity.rule == rule)
    if severity:
        query = query.where(Nonconformity.severity == severity)
    if state:
        query = query.where(Nonconformity.state == state)
    if overdue is not None:
        query = query.where(Nonconformity.overdue.is_(overdue))
    if month:
        query = query.where(
            exists().where(
                ComplianceRecord.incident_id == Nonconformity.incident_id,
                ComplianceRecord.policy == Nonconformity.policy,
                ComplianceRecord.month == month,
            )
        )
    return query


def nc_out(nc: Nonconformity, principal: Principal) -> NonconformityOut:
    """A nonconformity as the caller may see it: personal data in its detail masked."""
    out = NonconformityOut.model_validate(nc)
    return out.model_copy(update={"detail": free_text(principal, nc.detail) or ""})


@router.get("/nonconformities", response_model=Page[NonconformityOut])
def list_nonconformities(
    s: SessionDep,
    principal: Reader,
    rule: Annotated[Rule | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    state: Annotated[NcState | None, Query()] = None,
    month: Month = None,
    overdue: Annotated[
        bool | None,
        Query(description="true: only those open past their deadline; false: the others"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NonconformityOut]:
    """Nonconformities, filtered; ``month`` is their incident's compliance month."""
    query = nc_query(rule=rule, severity=severity, state=state, month=month, overdue=overdue)
    rows, nxt = page(s, query, Nonconformity.id, limit, cursor)
    items = [nc_out(n, principal) for n in rows]
    return Page[NonconformityOut](items=items, next_cursor=nxt)
