"""What the routes share: the runtime, a read session, paging, masking, audit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from sqlalchemy import Select
from sqlalchemy.orm import Session

from api.auth import Permission, Principal, require
from api.problems import problem_schema_ref
from core.loop.common import audit
from core.privacy import mask_email, mask_name, mask_phone
from core.runtime import Runtime

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
MAX_LIMIT = 500


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (one per process)."""
    rt: Runtime = request.app.state.rt
    return rt


def read_session(rt: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    """A session for reading; writes open their own transaction in the route."""
    with rt.db.sessions() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(read_session)]
Reader = Annotated[Principal, Depends(require(Permission.READ))]
MAX_ID = 2**31 - 1
"""Row ids are 32-bit integers in the store (PostgreSQL ``integer``)."""
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Cursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,10}$",
        description="The next_cursor of the previous page (omit for the first page).",
    ),
]
Month = Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM")]


def page(
    session: Session, query: Select[Any], id_column: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of ``query`` by ascending id; returns the rows and the next cursor."""
    if cursor is not None:
        if int(cursor) >= MAX_ID:
            return [], None
        query = query.where(id_column > int(cursor))
    rows = list(session.scalars(query.order_by(id_column).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1].id) if more and rows else None)


def contact(principal: Principal, *, name: str | None, phone: str | None, email: str | None) -> Any:
    """Contact details, masked unless ``principal`` may see them."""
    if principal.sees_contacts:
        return {"name": name, "phone": phone, "email": email}
    return {"name": mask_name(name), "phone": mask_phone(phone), "email": mask_email(email)}


def record_audit(
    session: Session,
    rt: Runtime,
    principal: Principal | None,
    action: str,
    entity: str,
    entity_id: object,
    *,
    anonymous: str = "anonymous",
    **detail: object,
) -> None:
    """Add an audit entry by the token's name, or ``anonymous`` (the caller commits)."""
    actor = principal.name if principal is not None else anonymous
    audit(session, rt, action, entity, entity_id, actor=actor, **detail)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem details with these statuses."""
    return {s: {"description": "Problem detail", "content": problem_schema_ref()} for s in statuses}


READ_PROBLEMS = problems(401, 403, 422)
"""What every authenticated read can answer besides 200."""
