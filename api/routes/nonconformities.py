"""Nonconformities (R5) and their rectification tickets (R6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import exists, select

from api.routes.common import READ_PROBLEMS, Cursor, Limit, Month, Reader, SessionDep, page
from api.routes.schemas import NonconformityOut, Page
from core.states import NcState, Rule, Severity
from core.store.models import ComplianceRecord, Nonconformity

router = APIRouter(tags=["nonconformities"], responses=READ_PROBLEMS)


@router.get("/nonconformities", response_model=Page[NonconformityOut])
def list_nonconformities(
    s: SessionDep,
    _: Reader,
    rule: Annotated[Rule | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    state: Annotated[NcState | None, Query()] = None,
    month: Month = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[NonconformityOut]:
    """Nonconformities, filtered; ``month`` is their incident's compliance month."""
    query = select(Nonconformity)
    if rule:
        query = query.where(Nonconformity.rule == rule)
    if severity:
        query = query.where(Nonconformity.severity == severity)
    if state:
        query = query.where(Nonconformity.state == state)
    if month:
        query = query.where(
            exists().where(
                ComplianceRecord.incident_id == Nonconformity.incident_id,
                ComplianceRecord.policy == Nonconformity.policy,
                ComplianceRecord.month == month,
            )
        )
    rows, nxt = page(s, query, Nonconformity.id, limit, cursor)
    items = [NonconformityOut.model_validate(n) for n in rows]
    return Page[NonconformityOut](items=items, next_cursor=nxt)
