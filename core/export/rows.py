"""Rows of the compliance export and the month's indicators, read from the store.

Rows stream from the database (``yield_per``), so the export never holds a
month in memory. Times are shown in the configured display zone; contact
details are masked unless the caller may see them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, tzinfo
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Result,
    Select,
    String,
    Text,
    and_,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from core.compliance import (
    CallbackVerdict,
    Evaluation,
    MonthlyIndicators,
    NonconformityState,
    Policy,
)
from core.compliance.indicators import IndicatorsFold
from core.export.columns import Memo, final_callbacks
from core.export.driver_rows import driver_batches
from core.export.local_time import LocalIso
from core.export.writers import CellKind
from core.privacy import mask_email, mask_name, mask_phone, mask_pii_text
from core.store.models import (
    ComplianceRecord,
    Incident,
    Nonconformity,
    SurveyInvitation,
)
from core.timeutil import local_iso

EXPORT_BATCH = 2000
"""Rows read from the database at a time."""

COLUMNS: tuple[str, ...] = (
    "source",
    "incident_key",
    "external_id",
    "title",
    "service",
    "customer",
    "contact_name",
    "contact_phone",
    "contact_email",
    "priority",
    "status",
    "created_at",
    "first_response_at",
    "resolved_at",
    "reopen_count",
    "response_s",
    "response_target_s",
    "response_met",
    "resolution_s",
    "resolution_target_s",
    "resolution_met",
    "source_response_met",
    "source_resolution_met",
    "sla_disagreement",
    "callback_due",
    "callback_verdict",
    "callback_attempts",
    "callback_first_reached_at",
    "confirmed",
    "callback_score",
    "survey_state",
    "survey_channel",
    "survey_score",
    "nonconformities",
    "nonconformities_open",
    "policy",
    "policy_version",
    "evaluated_at",
)


_INSTANTS = frozenset(
    (
        "created_at",
        "first_response_at",
        "resolved_at",
        "callback_due",
        "callback_first_reached_at",
        "evaluated_at",
    )
)
_COUNTS = frozenset(
    (
        "reopen_count",
        "response_s",
        "response_target_s",
        "resolution_s",
        "resolution_target_s",
        "nonconformities_open",
    )
)
_FLAGS = frozenset(
    (
        "response_met",
        "resolution_met",
        "source_response_met",
        "source_resolution_met",
        "confirmed",
    )
)
COLUMN_KINDS: tuple[CellKind, ...] = tuple(
    "plain"
    if c in _INSTANTS or c in _COUNTS
    else "flag"
    if c in _FLAGS
    else "any"
    if c in ("callback_attempts", "callback_score", "survey_score")
    else "text"
    for c in COLUMNS
)
"""What each column of :func:`export_tuples` holds, for the CSV writer: ISO instants
and the store's integers are written as they are, booleans as yes/no, every other
text (from the ITSM tool, a customer, the configuration) made safe, the scores and
the attempts (floats, JSON values) cell by cell."""


def _final(resolutions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    finals = [r for r in resolutions if r.get("final")]
    return finals[-1] if finals else {}


def closing_result(result: Result[Any], batch: int = EXPORT_BATCH) -> Iterator[Any]:
    """The result's rows; its cursor is closed even when the reader stops half-way.

    The rows are fetched ``batch`` at a time (one call per batch, not per row).
    """
    try:
        for rows in result.partitions(batch):
            yield from rows
    finally:
        result.close()


INCIDENT_FIELDS = (
    "id",
    "source",
    "key",
    "external_id",
    "title",
    "service",
    "customer",
    "contact_name",
    "contact_phone",
    "contact_email",
    "priority",
    "status",
    "created_at",
)
"""The incident's columns an export row shows (:class:`IncidentFields`)."""


class IncidentFields(Protocol):
    """What an export row reads of an incident: an ORM ``Incident`` or a row of its columns."""

    @property
    def id(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...
    @property
    def customer(self) -> str | None: ...
    @property
    def contact_name(self) -> str | None: ...
    @property
    def contact_phone(self) -> str | None: ...
    @property
    def contact_email(self) -> str | None: ...
    @property
    def priority(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def month_records(policy: str, version: str, month: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions on :class:`ComplianceRecord` that pick one policy version's month."""
    return (
        ComplianceRecord.policy == policy,
        ComplianceRecord.policy_version == version,
        ComplianceRecord.month == month,
    )


def _stored_text(column: Any, dialect: str) -> ColumnElement[Any]:
    """An instant as SQLite stores it, UTC ``YYYY-MM-DD HH:MM:SS.ffffff``: the stored
    text on SQLite, formatted so by PostgreSQL (no datetime per value in Python)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS.US")
    return type_coerce(column, String)


def _json_text(column: Any, dialect: str) -> ColumnElement[Any]:
    """A JSON column as its text (PostgreSQL's driver would decode it, slower than orjson)."""
    return cast(column, Text) if dialect == "postgresql" else type_coerce(column, String)


def _export_query(
    policy: str, version: str, month: str, *, dialect: str, keys: KeyRange = (None, None)
) -> Select[Any]:
    """The month's rows: incident, survey invitation, record (see :func:`export_tuples`);
    only those whose ORDER BY key is in ``keys`` (:func:`key_range_condition`).

    Every column is read as the driver gives it
    (:func:`~core.export.driver_rows.driver_batches`): instants as the
    stored text (:func:`_stored_text`), formatted without a datetime
    (:class:`~core.export.local_time.LocalIso`); booleans as SQLite's 0
    and 1; the resolutions as JSON text, decoded only where a resolution
    is final (:func:`~core.export.columns.final_callbacks`). The policy and
    its version are the query's own (:data:`_QUERY_CONSTANTS`): not read.
    """
    instants = {"first_response_at", "resolved_at", "callback_due", "evaluated_at"}
    record = [
        _stored_text(getattr(ComplianceRecord, name), dialect)
        if name in instants
        else _json_text(ComplianceRecord.resolutions, dialect)
        if name == "resolutions"
        else getattr(ComplianceRecord, name)
        for name in RECORD_FIELDS
        if name not in _QUERY_CONSTANTS
    ]
    return (
        select(
            *[getattr(Incident, name) for name in INCIDENT_FIELDS if name != "created_at"],
            _stored_text(Incident.created_at, dialect),
            SurveyInvitation.state,
            SurveyInvitation.channel,
            *record,
        )
        .join(Incident, Incident.id == ComplianceRecord.incident_id)
        .outerjoin(SurveyInvitation, SurveyInvitation.incident_id == Incident.id)
        .where(
            *month_records(policy, version, month),
            ComplianceRecord.cancelled.is_(False),
            *key_range_condition(keys, dialect),
        )
        .order_by(ComplianceRecord.resolved_at, Incident.id)
    )


ExportKey = tuple[str, int]
"""An export row's ORDER BY key: the record's resolved_at as :func:`_stored_text` gives
it (UTC ``YYYY-MM-DD HH:MM:SS.ffffff``) and the incident's id."""
KeyRange = tuple[ExportKey | None, ExportKey | None]
"""Rows from the first key (included) to the second (excluded); None: no bound."""


def _key_at_least(key: ExportKey, dialect: str) -> ColumnElement[bool]:
    """The record's ORDER BY key is ``key`` or after it (text and int parameters only)."""
    at, inc_id = key
    if dialect == "postgresql":  # the exact instant back from its UTC text
        instant: Any = cast(literal(at + "+00:00", String), DateTime(timezone=True))
        resolved: Any = ComplianceRecord.resolved_at
    else:  # SQLite orders the stored text: compare the stored text
        instant = literal(at, String)
        resolved = type_coerce(ComplianceRecord.resolved_at, String)
    return or_(
        resolved > instant,
        and_(resolved == instant, ComplianceRecord.incident_id >= literal(inc_id, Integer)),
    )


def key_range_condition(keys: KeyRange, dialect: str) -> list[ColumnElement[bool]]:
    """The conditions that keep the rows whose ORDER BY key (resolved_at, incident id) is
    from ``keys[0]`` (included) to ``keys[1]`` (excluded); none for ``(None, None)``.

    Only for a month without a record whose resolved_at is null (such a key has no
    place that both SQLite and PostgreSQL agree on): :func:`export_split_keys` checks.
    """
    low, high = keys
    found = []
    if low is not None:
        found.append(_key_at_least(low, dialect))
    if high is not None:
        found.append(not_(_key_at_least(high, dialect)))
    return found


def export_split_keys(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    parts: int,
    least: int,
    first_share: float = 1.0,
) -> tuple[int, list[ExportKey]]:
    """The number of rows of the month's export and up to ``parts - 1`` keys that cut it
    into contiguous parts (in ORDER BY order) of about as many rows each, the first
    ``first_share`` times as many as each other.

    No key (one part) when a part would hold fewer than ``least`` rows, or when a
    record of the month has no resolved_at.
    """
    dialect = session.get_bind().dialect.name
    conn = session.connection()
    where = (*month_records(policy, version, month), ComplianceRecord.cancelled.is_(False))
    # the records alone: each has its incident (a foreign key), as the export's join reads
    rows, resolved = conn.execute(
        select(func.count(), func.count(ComplianceRecord.resolved_at)).where(*where)
    ).one()
    parts = min(parts, rows // max(1, least))
    if parts <= 1 or resolved != rows:
        return rows, []
    probe = (
        select(_stored_text(ComplianceRecord.resolved_at, dialect), ComplianceRecord.incident_id)
        .where(*where)
        .order_by(ComplianceRecord.resolved_at, ComplianceRecord.incident_id)
        .limit(1)
    )
    keys = []
    unit = rows / (first_share + parts - 1)
    for k in range(1, parts):
        at, inc_id = conn.execute(probe.offset(int(unit * (first_share + k - 1)))).one()
        keys.append((str(at), int(inc_id)))
    return rows, keys


_QUERY_CONSTANTS = frozenset(("policy", "policy_version"))
"""The record's columns :func:`_export_query` picks one value of, and does not read."""


def _month_ncs(
    session: Session, policy: str, version: str, month: str
) -> dict[int, tuple[str, int]]:
    """The export's two cells of the month's incidents' nonconformities, by incident id.

    ``rule:severity`` of each, sorted, joined by ``; ``; and how many are open.
    """
    ncs: dict[int, list[tuple[str, str, bool]]] = {}
    for inc_id, rule, severity, state in closing_result(
        session.connection().execute(
            select(
                Nonconformity.incident_id,
                Nonconformity.rule,
                Nonconformity.severity,
                Nonconformity.state,
            )
            .join(ComplianceRecord, ComplianceRecord.incident_id == Nonconformity.incident_id)
            .where(
                *month_records(policy, version, month),
                Nonconformity.policy == policy,
                Nonconformity.state != "withdrawn",
            )
        )
    ):
        ncs.setdefault(inc_id, []).append((rule, severity, state != "closed"))
    return {
        inc_id: (
            "; ".join(f"{r}:{sev}" for r, sev, _ in sorted(found)),
            sum(1 for *_, is_open in found if is_open),
        )
        for inc_id, found in ncs.items()
    }


_NO_NCS = ("", 0)


class RecordTally:
    """The indicators' values of the rows an export read, counted as the rows pass.

    :func:`export_tuples` counts each batch's (priority, verdicts, scores)
    in C (a :class:`~collections.Counter`); once every row was read,
    :meth:`fold_into` adds each distinct combination to an
    :class:`IndicatorsFold` once with its count: the same fold as
    :func:`period_indicators`' grouped query, without reading the month's
    join a second time.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[Any, ...]] = Counter()
        self.done = False
        """Every row of the export was read (the counts are the month's)."""

    def fold_into(self, fold: IndicatorsFold, month: str) -> None:
        """Add the counted records to ``fold``.

        Raises:
            RuntimeError: The export's rows were not all read yet.
        """
        if not self.done:
            msg = "the month's indicators are read before every row of its export"
            raise RuntimeError(msg)
        for (priority, *values), count in self.counts.items():
            fields = dict(zip(_TALLIED, values, strict=True))
            fold.add(
                priority, _as_evaluation({**fields, "month": month, "cancelled": False}), count
            )


_TALLIED = (
    "response_met",
    "resolution_met",
    "callback_verdict",
    "confirmed",
    "callback_score",
    "survey_score",
)
"""The record's columns a :class:`RecordTally` counts (after the incident's priority)."""


def export_tuples(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    tz: tzinfo,
    unmask: bool = False,
    tally: RecordTally | None = None,
) -> Iterator[tuple[Any, ...]]:
    """One tuple per incident of ``month`` under the policy version, in COLUMNS order:
    the rows of :func:`export_columns`' batches."""
    for columns in export_columns(
        session, policy=policy, version=version, month=month, tz=tz, unmask=unmask, tally=tally
    ):
        yield from zip(*columns, strict=True)


def export_columns(
    session: Session,
    *,
    policy: str,
    version: str,
    month: str,
    tz: tzinfo,
    unmask: bool = False,
    tally: RecordTally | None = None,
    keys: KeyRange = (None, None),
) -> Iterator[list[Sequence[Any]]]:
    """The incidents of ``month`` under the policy version, a batch at a time, each batch
    as its columns in COLUMNS order (for :class:`~core.export.writers.Table`'s ``columnar``).

    The same values as :func:`incident_row` gives for the stored record,
    without a dict or a datetime per value: the rows stream as the driver
    gives them (:func:`~core.export.driver_rows.driver_batches`), and each
    batch is converted a column at a
    time (:mod:`core.export.columns`; instants from their stored text by
    :class:`~core.export.local_time.LocalIso`). The export of a month of
    any size holds one batch. ``tally``: counts the rows' indicator values
    as they pass (:class:`RecordTally`), marked done after the last row. ``keys``: only
    the rows of that range of the ORDER BY (:func:`key_range_condition`).
    """
    ncs = _month_ncs(session, policy, version, month)
    local = LocalIso(tz)
    masks = [Memo(mask_pii_text), Memo(mask_name), Memo(mask_phone), Memo(mask_email)]
    flags = Memo(_flag)
    query = _export_query(
        policy, version, month, dialect=session.get_bind().dialect.name, keys=keys
    )
    counts = tally.counts if tally is not None else None
    for batch in driver_batches(session, query, EXPORT_BATCH):
        yield _converted(
            batch, ncs, local, flags, None if unmask else masks, counts, (policy, version)
        )
    if tally is not None:
        tally.done = True


def _flag(value: Any) -> bool | None:
    """A stored boolean as SQLAlchemy reads it (SQLite stores 0 and 1)."""
    return None if value is None else bool(value)


def _converted(
    batch: Sequence[Any],
    ncs: Mapping[int, tuple[str, int]],
    local: LocalIso,
    flags: Memo,
    masks: Sequence[Memo] | None,
    counts: Counter[tuple[Any, ...]] | None,
    policy: tuple[str, str],
) -> list[Sequence[Any]]:
    """A batch of the export query's rows as the export's columns (see :func:`export_columns`);
    ``counts``: a :class:`RecordTally`'s, updated with the batch's records; ``policy``:
    the query's policy and version (the same on every row)."""
    (
        ids,
        source,
        key,
        external_id,
        title,
        service,
        customer,
        contact_name,
        contact_phone,
        contact_email,
        priority,
        status,
        created_at,
        survey_state,
        survey_channel,
        first_response_at,
        resolved_at,
        reopen_count,
        response_s,
        response_target_s,
        response_met,
        resolution_s,
        resolution_target_s,
        resolution_met,
        source_response_met,
        source_resolution_met,
        sla_disagreement,
        callback_due,
        callback_verdict,
        confirmed,
        callback_score,
        survey_score,
        resolutions,
        evaluated_at,
    ) = zip(*batch, strict=True)
    if counts is not None:  # in _TALLIED's order, as the driver read them
        counts.update(
            zip(
                priority,
                response_met,
                resolution_met,
                callback_verdict,
                confirmed,
                callback_score,
                survey_score,
                strict=True,
            )
        )
    if masks is not None:
        title, contact_name, contact_phone, contact_email = (
            memo.column(values)
            for memo, values in zip(
                masks, (title, contact_name, contact_phone, contact_email), strict=True
            )
        )
    response_met, resolution_met, source_response_met, source_resolution_met, confirmed = (
        flags.column(values)
        for values in (
            response_met,
            resolution_met,
            source_response_met,
            source_resolution_met,
            confirmed,
        )
    )
    attempts, reached = final_callbacks(resolutions, local)
    n = len(ids)
    if ncs:
        found = list(map(ncs.get, ids, repeat(_NO_NCS)))
        nc_texts, nc_open = list(map(itemgetter(0), found)), list(map(itemgetter(1), found))
    else:
        nc_texts, nc_open = [""] * n, [0] * n
    return [
        source,
        key,
        external_id,
        title,
        service,
        customer,
        contact_name,
        contact_phone,
        contact_email,
        priority,
        status,
        local.column(created_at),
        local.column(first_response_at),
        local.column(resolved_at),
        reopen_count,
        response_s,
        response_target_s,
        response_met,
        resolution_s,
        resolution_target_s,
        resolution_met,
        source_response_met,
        source_resolution_met,
        sla_disagreement,
        local.column(callback_due),
        callback_verdict,
        attempts,
        reached,
        confirmed,
        callback_score,
        survey_state,
        survey_channel,
        survey_score,
        nc_texts,
        nc_open,
        [policy[0]] * n,
        [policy[1]] * n,
        local.column(evaluated_at),
    ]


def export_rows(
    session: Session, *, policy: str, version: str, month: str, tz: tzinfo, unmask: bool = False
) -> Iterator[dict[str, Any]]:
    """One dict per incident of ``month`` under the policy version, in COLUMNS order.

    The rows of :func:`export_tuples` under their column names.
    """
    for row in export_tuples(
        session, policy=policy, version=version, month=month, tz=tz, unmask=unmask
    ):
        yield dict(zip(COLUMNS, row, strict=True))


RECORD_FIELDS = (
    "first_response_at",
    "resolved_at",
    "reopen_count",
    "response_s",
    "response_target_s",
    "response_met",
    "resolution_s",
    "resolution_target_s",
    "resolution_met",
    "source_response_met",
    "source_resolution_met",
    "sla_disagreement",
    "callback_due",
    "callback_verdict",
    "confirmed",
    "callback_score",
    "survey_score",
    "resolutions",
    "policy",
    "policy_version",
    "evaluated_at",
)
"""The compliance record's columns an export row shows."""


def incident_row(
    rec: Mapping[str, Any],
    inc: IncidentFields,
    survey: tuple[str | None, str | None],
    ncs: Sequence[tuple[str, str, bool]],
    *,
    tz: tzinfo,
    unmask: bool,
) -> dict[str, Any]:
    """One export row, in COLUMNS order.

    Args:
        rec: The verdicts (:data:`RECORD_FIELDS`), stored or computed as of an instant.
        inc: The incident.
        survey: Its survey invitation's state and channel (None, None without one).
        ncs: Its nonconformities as (rule, severity, open).
        tz: The display zone.
        unmask: Show contact details (else masked).
    """
    final = _final(rec["resolutions"])
    return {
        "source": inc.source,
        "incident_key": inc.key,
        "external_id": inc.external_id,
        "title": inc.title if unmask else mask_pii_text(inc.title),
        "service": inc.service,
        "customer": inc.customer,
        "contact_name": inc.contact_name if unmask else mask_name(inc.contact_name),
        "contact_phone": inc.contact_phone if unmask else mask_phone(inc.contact_phone),
        "contact_email": inc.contact_email if unmask else mask_email(inc.contact_email),
        "priority": inc.priority,
        "status": rec.get("status", inc.status),
        "created_at": local_iso(inc.created_at, tz),
        "first_response_at": local_iso(rec["first_response_at"], tz),
        "resolved_at": local_iso(rec["resolved_at"], tz),
        "reopen_count": rec["reopen_count"],
        "response_s": rec["response_s"],
        "response_target_s": rec["response_target_s"],
        "response_met": rec["response_met"],
        "resolution_s": rec["resolution_s"],
        "resolution_target_s": rec["resolution_target_s"],
        "resolution_met": rec["resolution_met"],
        "source_response_met": rec["source_response_met"],
        "source_resolution_met": rec["source_resolution_met"],
        "sla_disagreement": rec["sla_disagreement"],
        "callback_due": local_iso(rec["callback_due"], tz),
        "callback_verdict": rec["callback_verdict"],
        "callback_attempts": final.get("attempts"),
        "callback_first_reached_at": local_iso(
            datetime.fromisoformat(final["first_reached_at"]), tz
        )
        if final.get("first_reached_at")
        else None,
        "confirmed": rec["confirmed"],
        "callback_score": rec["callback_score"],
        "survey_state": survey[0],
        "survey_channel": survey[1],
        "survey_score": rec["survey_score"],
        "nonconformities": "; ".join(f"{r}:{sev}" for r, sev, _ in sorted(ncs)),
        "nonconformities_open": sum(1 for *_, is_open in ncs if is_open),
        "policy": rec["policy"],
        "policy_version": rec["policy_version"],
        "evaluated_at": local_iso(rec["evaluated_at"], tz),
    }


_INDICATOR_FIELDS = (
    "month",
    "cancelled",
    "response_met",
    "resolution_met",
    "callback_verdict",
    "confirmed",
    "callback_score",
    "survey_score",
)
"""The record's columns the indicators read."""


def _as_evaluation(values: Mapping[str, Any]) -> Evaluation:
    """Enough of an Evaluation, rebuilt from its stored record's columns, for the indicators."""
    verdict = values["callback_verdict"]
    return Evaluation(
        policy_name="",
        policy_version="",
        evaluated_at=datetime.min,
        cancelled=values["cancelled"],
        first_response_at=None,
        resolved_at=None,
        month=values["month"],
        reopen_count=0,
        response_s=None,
        response_target_s=None,
        response_met=values["response_met"],
        resolution_s=None,
        resolution_target_s=None,
        resolution_met=values["resolution_met"],
        resolutions=(),
        callback_verdict=CallbackVerdict(verdict) if verdict else None,
        callback_due=None,
        confirmed=values["confirmed"],
        callback_score=values["callback_score"],
        survey_score=values["survey_score"],
        findings=(),
        next_check_at=None,
    )


def period_indicators(
    session: Session, *, policy: str, version: str, month: str, now: datetime, rules: Policy
) -> MonthlyIndicators:
    """The month's indicators (R4) from the stored compliance records.

    ``rules`` is the policy named ``policy`` (its CSAT threshold). The
    records are read grouped by the values the indicators read (a few
    hundred groups for any month), and each group is folded once as that
    many records (:class:`IndicatorsFold`, whose result does not depend on
    the order); the nonconformities likewise, grouped by rule, severity,
    closed and past deadline.
    """
    fold = IndicatorsFold(month, now, policy=rules)
    values = [Incident.priority, *[getattr(ComplianceRecord, f) for f in _INDICATOR_FIELDS]]
    for *row, count in closing_result(
        session.connection().execute(
            select(*values, func.count())
            .join(Incident, Incident.id == ComplianceRecord.incident_id)
            .where(
                *month_records(policy, version, month),
            )
            .group_by(*values)
        )
    ):
        evaluation = _as_evaluation(dict(zip(_INDICATOR_FIELDS, row[1:], strict=True)))
        fold.add(row[0], evaluation, count)
    fold_nonconformities(session, fold, policy=policy, version=version, month=month, now=now)
    return fold.result()


def fold_nonconformities(
    session: Session,
    fold: IndicatorsFold,
    *,
    policy: str,
    version: str,
    month: str,
    now: datetime,
) -> None:
    """Add the month's nonconformities to ``fold``, grouped by rule, severity, closed and
    past deadline (one :meth:`~IndicatorsFold.add_nc` per group, with its count)."""
    closed = Nonconformity.state == "closed"
    past = Nonconformity.deadline < now
    for rule, severity, is_closed, deadline, count in closing_result(
        session.connection().execute(
            select(
                Nonconformity.rule,
                Nonconformity.severity,
                closed,
                func.min(Nonconformity.deadline),  # one of the group: all past now or none
                func.count(),
            )
            .join(ComplianceRecord, ComplianceRecord.incident_id == Nonconformity.incident_id)
            .where(
                *month_records(policy, version, month),
                ComplianceRecord.cancelled.is_(False),
                Nonconformity.policy == policy,
                Nonconformity.state != "withdrawn",
            )
            .group_by(Nonconformity.rule, Nonconformity.severity, closed, past)
        )
    ):
        fold.add_nc(NonconformityState(rule, severity, bool(is_closed), deadline), count)
