"""Load what the compliance engine needs for a batch of incidents, in few queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from core.compliance import Attempt, IncidentFacts, SurveyAnswer, facts_as_of
from core.loop._bulk import chunks, dense_span, ids_condition, table_of
from core.records import Category, StatusChange
from core.store.models import Match, Response, StatusEvent


def load_history(session: Session, ids: Sequence[int]) -> dict[int, list[StatusChange]]:
    """The status history of each incident of ``ids``, in order.

    Read through the session's Core connection (plain rows, no ORM result
    handling), by id range when the ids are dense (:func:`ids_condition`);
    on SQLite through the driver's cursor (tuples, each instant through its
    column type's result processor, as the select converts it).
    """
    history: dict[int, list[StatusChange]] = defaultdict(list)
    categories = {c.value: c for c in Category}
    conn = session.connection()
    instant = _sqlite_instant(conn)
    for chunk in chunks(ids):
        rows: Sequence[Any]
        if instant is not None:
            rows, keep = _sqlite_history(conn, chunk)
        else:
            where, keep = ids_condition(StatusEvent.incident_id, chunk)
            rows = conn.execute(
                select(
                    StatusEvent.incident_id,
                    StatusEvent.at,
                    StatusEvent.category,
                    StatusEvent.status,
                )
                .where(where)
                .order_by(StatusEvent.incident_id, StatusEvent.seq)
            ).all()  # one fetchall, not a fetch per row
        for inc_id, at, category, status in rows:
            if keep is not None and inc_id not in keep:
                continue
            cat = categories.get(category) or Category(category)
            history[inc_id].append(
                StatusChange(at if instant is None else instant(at), cat, status)
            )
    return history


_HISTORY = "SELECT incident_id, at, category, status FROM status_event WHERE incident_id "
_HISTORY_ORDER = " ORDER BY incident_id, seq"


def _sqlite_instant(conn: Connection) -> Callable[[Any], Any] | None:
    """SQLite: how the select converts a stored ``status_event.at``; None elsewhere."""
    if conn.dialect.name != "sqlite":
        return None
    at = table_of(StatusEvent).c.at.type.dialect_impl(conn.dialect)
    process = at.result_processor(conn.dialect, None)
    return process if process is not None else (lambda value: value)


def _sqlite_history(conn: Connection, chunk: list[int]) -> tuple[list[Any], set[int] | None]:
    """The status events of ``chunk`` (a range read when dense), by the driver's cursor."""
    driver: Any = conn.connection.driver_connection
    span = dense_span(chunk)
    if span is not None:
        sql = _HISTORY + "BETWEEN ? AND ?" + _HISTORY_ORDER
        return driver.execute(sql, span).fetchall(), set(chunk)
    marks = ", ".join("?" * len(chunk))
    return driver.execute(f"{_HISTORY}IN ({marks}){_HISTORY_ORDER}", chunk).fetchall(), None


def load_answers(
    session: Session, ids: Sequence[int], before: datetime | None = None
) -> tuple[dict[int, list[Attempt]], dict[int, list[SurveyAnswer]]]:
    """The matched callback attempts and survey answers of ``ids``, by instant then response id.

    ``before``: only the answers that occurred before it (a month judged as
    of an instant). The match's status is tested here, not in the query:
    with it in the query SQLite looks a chunk up through ``ix_match_status``,
    every matched response of the store for each chunk (quadratic in the
    store's size), instead of through ``ix_match_incident_id``.
    """
    attempts: dict[int, list[Attempt]] = defaultdict(list)
    answers: dict[int, list[SurveyAnswer]] = defaultdict(list)
    conn = session.connection()
    for chunk in chunks(ids):
        where, keep = ids_condition(Match.incident_id, chunk)
        rows = conn.execute(
            select(
                Match.incident_id,
                Match.status,
                Response.id,
                Response.kind,
                Response.occurred_at,
                Response.reached,
                Response.confirmed,
                Response.score,
            )
            .join(Response, Response.id == Match.response_id)
            .where(where)
            .order_by(Response.occurred_at, Response.id)
        ).all()
        for inc_id, status, resp_id, kind, occurred_at, reached, confirmed, score in rows:
            if status != "matched" or inc_id is None:
                continue
            if keep is not None and inc_id not in keep:
                continue
            if before is not None and not occurred_at < before:
                continue
            if kind == "callback_attempt":
                attempts[inc_id].append(
                    Attempt(
                        at=occurred_at,
                        reached=bool(reached),
                        confirmed=confirmed,
                        score=score,
                        ref=f"response:{resp_id}",
                    )
                )
            else:
                answers[inc_id].append(
                    SurveyAnswer(at=occurred_at, score=score, ref=f"response:{resp_id}")
                )
    return attempts, answers


def load_facts(
    session: Session,
    incidents: Sequence[Any],
    with_answers: bool = True,
    *,
    as_of: datetime | None = None,
) -> dict[int, IncidentFacts]:
    """IncidentFacts per incident id (history, and matched attempts and answers).

    ``incidents`` are ``Incident`` objects or rows with their ``id``,
    ``priority`` and ``created_at``.

    With ``as_of``, only what happened at or before it (SPEC §10
    "Evaluation instant"); incidents created after it are left out.
    """
    ids = [i.id for i in incidents]
    history = load_history(session, ids)
    attempts, answers = load_answers(session, ids) if with_answers else ({}, {})
    facts = {
        inc.id: IncidentFacts(
            priority=inc.priority,
            created_at=inc.created_at,
            history=history.get(inc.id, []),
            attempts=attempts.get(inc.id, []),
            survey_answers=answers.get(inc.id, []),
        )
        for inc in incidents
    }
    if as_of is None:
        return facts
    seen = {inc_id: facts_as_of(f, as_of) for inc_id, f in facts.items()}
    return {inc_id: f for inc_id, f in seen.items() if f is not None}
