"""New compliance records bound for the SQLite driver: one tuple per record, no dicts.

The evaluate step stores one record per incident; on SQLite the new ones go
to the driver's ``executemany`` as tuples built straight from the
:class:`~core.compliance.Evaluation`: no values dict, no per-column lookup,
the resolutions and findings written by one orjson call each (orjson
writes the instants itself). The stored bytes are those of
:func:`core.loop.evaluate.evaluation_values` bound through each column's
type (tested; ``bench/evaluate_1m.py`` checks a month's records):

- an instant is bound by its column type's processor (the run's instant,
  which most records hold twice, once per batch);
- a boolean goes to the driver as it is: sqlite3 stores ``True`` as the
  integer 1, what the ``Boolean`` type's ``int()`` gives;
- orjson writes an aware UTC instant as ``isoformat()`` does, an enum as its
  value (``str()`` of a ``StrEnum``) and a dataclass as its ``__dict__``
  (in field order: ``quick_init`` fills it so). An outcome or finding that
  is not exactly that (an instant in another zone, a subclass, an attribute
  cached on the instance) is written through the general path instead.

Elsewhere (PostgreSQL) :meth:`RecordRows.fast` is False and the caller
keeps the values dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from core.compliance import Evaluation, Finding, ResolutionOutcome
from core.loop._bulk import _insert_sql, table_of
from core.loop.record_values import finding_to_json, flags_disagreement, resolution_json
from core.store.db import json_text
from core.store.models import ComplianceRecord

COLUMNS = (
    "incident_id",
    "policy",
    "policy_version",
    "evaluated_at",
    "month",
    "cancelled",
    "first_response_at",
    "resolved_at",
    "reopen_count",
    "response_s",
    "response_target_s",
    "response_met",
    "resolution_s",
    "resolution_target_s",
    "resolution_met",
    "callback_verdict",
    "callback_due",
    "confirmed",
    "callback_score",
    "survey_score",
    "source_response_met",
    "source_resolution_met",
    "sla_disagreement",
    "resolutions",
    "findings",
    "raised",
    "as_of",
    "qloop_version",
    "holidays_version",
)
"""Every column of a compliance record but its id, in the order of the tuples."""

_OUTCOME_FIELDS = len(fields(ResolutionOutcome))


def _plain_outcome(o: Any) -> bool:
    """Whether orjson writes ``o`` as ``resolution_json`` + ``json_text`` do."""
    if type(o) is not ResolutionOutcome or len(o.__dict__) != _OUTCOME_FIELDS:
        return False
    return (
        o.at.tzinfo is UTC
        and o.due.tzinfo is UTC
        and (o.window_end is None or o.window_end.tzinfo is UTC)
        and (o.first_reached_at is None or o.first_reached_at.tzinfo is UTC)
    )


def resolutions_text(outcomes: tuple[ResolutionOutcome, ...]) -> str:
    """The stored JSON text of an evaluation's resolutions."""
    if all(_plain_outcome(o) for o in outcomes):
        return orjson.dumps(outcomes).decode()
    return json_text([resolution_json(o) for o in outcomes])


def findings_text(findings: tuple[Finding, ...]) -> str:
    """The stored JSON text of an evaluation's findings (``finding_to_json`` of each)."""
    out = []
    for f in findings:
        at = f.resolution_at
        if (
            type(f) is not Finding
            or (at is not None and at.tzinfo is not UTC)
            or f.raised_at.tzinfo is not UTC
            or f.deadline.tzinfo is not UTC
        ):
            return json_text([finding_to_json(g) for g in findings])
        out.append(
            {
                "key": f.key,
                "rule": f.rule,
                "severity": f.severity,
                "resolution_at": at,
                "raised_at": f.raised_at,
                "deadline": f.deadline,
                "detail": f.detail,
                "ref": f.ref,
            }
        )
    return orjson.dumps(out).decode()


DIALECTS: tuple[str, ...] = ("sqlite", "postgresql")
"""Where new records are bound as tuples for the driver (elsewhere: the values dicts)."""


def _same(text: str) -> str:
    return text


class RecordRows:
    """New compliance records of one batch, bound for the driver as they are added.

    SQLite's ``executemany`` and psycopg's (PostgreSQL: the JSON texts
    wrapped as ``Json`` whose dump is the text itself, what SQLAlchemy's
    JSON type sends after ``json_text``). Elsewhere :attr:`fast` is False.
    """

    def __init__(
        self, session: Session, now: datetime, stamps: tuple[str | None, str | None]
    ) -> None:
        conn = session.connection()
        dialect = conn.dialect
        self.fast = dialect.name in DIALECTS
        self._rows: list[tuple[Any, ...]] = []
        if not self.fast:
            return
        self._conn = conn
        table = table_of(ComplianceRecord)
        self._json: Callable[[str], Any] | None = None
        if dialect.name == "sqlite":
            self._sql = _insert_sql(conn, table, COLUMNS, 1)
        else:
            from psycopg.types.json import Json

            self._json = lambda text: Json(text, dumps=_same)
            prep = dialect.identifier_preparer
            cols = ", ".join(prep.quote(n) for n in COLUMNS)
            marks = ", ".join(["%s"] * len(COLUMNS))
            self._sql = f"INSERT INTO {prep.format_table(table)} ({cols}) VALUES ({marks})"
        bind = table.c.evaluated_at.type.dialect_impl(dialect).bind_processor(dialect)
        for name in ("as_of", "first_response_at", "resolved_at", "callback_due"):
            same = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if (same is None) != (bind is None) or (
                same is not bind and getattr(same, "__code__", None) is not bind.__code__  # type: ignore[union-attr]
            ):
                msg = f"compliance_record.{name}: not bound as evaluated_at is"
                raise TypeError(msg)
        self._bind: Callable[[Any], Any] = bind if bind is not None else (lambda v: v)
        self._now, self._now_bound = now, self._bind(now)
        self._stamps = stamps

    def add(self, inc: Any, ev: Evaluation, resolutions: str, findings: str) -> None:
        """Add the new record of ``inc`` (a row with ``id`` and ``source_sla``) for ``ev``."""
        bind, now, wrap = self._bind, self._now, self._json
        sla = inc.source_sla if isinstance(inc.source_sla, dict) else None
        if sla:
            theirs_response = sla.get("response_met")
            theirs_resolution = sla.get("resolution_met")
            disagree = flags_disagreement(theirs_response, theirs_resolution, ev)
        else:
            theirs_response = theirs_resolution = disagree = None
        evaluated_at = ev.evaluated_at
        first_response_at, resolved_at, callback_due = (
            ev.first_response_at,
            ev.resolved_at,
            ev.callback_due,
        )
        verdict = ev.callback_verdict
        self._rows.append(
            (
                inc.id,
                ev.policy_name,
                ev.policy_version,
                self._now_bound if evaluated_at is now else bind(evaluated_at),
                ev.month,
                ev.cancelled,
                None if first_response_at is None else bind(first_response_at),
                None if resolved_at is None else bind(resolved_at),
                ev.reopen_count,
                ev.response_s,
                ev.response_target_s,
                ev.response_met,
                ev.resolution_s,
                ev.resolution_target_s,
                ev.resolution_met,
                str(verdict) if verdict else None,
                None if callback_due is None else bind(callback_due),
                ev.confirmed,
                ev.callback_score,
                ev.survey_score,
                theirs_response if type(theirs_response) is bool else None,
                theirs_resolution if type(theirs_resolution) is bool else None,
                disagree,
                resolutions if wrap is None else wrap(resolutions),
                findings if wrap is None else wrap(findings),
                not ev.findings,
                self._now_bound,
                *self._stamps,
            )
        )

    def __len__(self) -> int:
        return len(self._rows)

    def insert(self) -> None:
        """Insert the records added so far (one ``executemany``) and forget them."""
        if self._rows and self._json is None:
            self._conn.exec_driver_sql(self._sql, self._rows)
        elif self._rows:
            driver: Any = self._conn.connection.driver_connection
            with driver.cursor() as cursor:  # in the session's transaction
                cursor.executemany(self._sql, self._rows)
        self._rows = []
