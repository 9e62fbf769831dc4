"""A month recomputed from the stored facts as of an instant (SPEC §10, "Evaluation instant").

``qloop evaluate``, ``qloop export --as-of`` and ``GET /exports/{period}?as_of=``
read no compliance record: they evaluate the stored facts seen at ``as_of``
in memory, and write nothing. Decisions beyond the SPEC:

- The month's incidents are those whose ``resolved_at``, as seen at
  ``as_of``, falls in the month (policy calendar's zone), not cancelled at
  ``as_of``; incidents of sources under the policy only.
- The tracking start of a source (§11) is its configured or stored one;
  without one, ``as_of`` (as evaluate does with "now").
- ``status`` is the source status of the last change seen at ``as_of``.
- ``evaluated_at`` is ``as_of``.
- A survey invitation shows if it was created at or before ``as_of``: state
  ``not_surveyable`` as stored, ``sent`` when its message went out at or
  before ``as_of``, else ``planned``.
- A nonconformity is open at ``as_of`` unless its ticket was closed at or
  before it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any, NamedTuple, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.compliance import (
    Evaluation,
    IncidentFacts,
    MonthlyIndicators,
    NonconformityState,
    Policy,
    evaluate_incident,
    monthly_indicators,
    whole_second,
)
from core.compliance.indicators import IndicatorsFold
from core.errors import InputError
from core.export.rows import INCIDENT_FIELDS, incident_row
from core.loop._bulk import IN_CHUNK, chunks
from core.loop.evaluate import disagreement, evaluation_values
from core.loop.facts import load_answers
from core.loop.nonconformities import dedup_key
from core.loop.sample import survey_key
from core.loop.tracking import tracking_starts
from core.records import Category, StatusChange
from core.runtime import Runtime
from core.store.models import (
    Incident,
    Nonconformity,
    NonconformityEvent,
    OutboxItem,
    StatusEvent,
    SurveyInvitation,
)
from core.timeutil import month_bounds, parse_instant

_ENDS = (Category.RESOLVED.value, Category.CLOSED.value)


class IncidentView(NamedTuple):
    """The incident columns judging and its readers use (export rows, report), as plain values.

    Read as a row of columns, not an ORM ``Incident`` (no instance state, no
    identity map): what :data:`core.export.rows.INCIDENT_FIELDS` shows, plus
    the source's SLA flags.
    """

    id: int
    source: str
    key: str
    external_id: str
    title: str
    service: str | None
    customer: str | None
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None
    priority: str
    status: str
    created_at: datetime
    source_sla: dict[str, Any]


if IncidentView._fields != (*INCIDENT_FIELDS, "source_sla"):  # pragma: no cover - a guard
    msg = "IncidentView must hold the export's INCIDENT_FIELDS and source_sla"
    raise AssertionError(msg)
_VIEW_COLUMNS = [getattr(Incident, name) for name in IncidentView._fields]


def _incident(view: IncidentView) -> Incident:
    """``view`` where the loop's helpers want an incident: they read only its columns."""
    return cast(Incident, view)


def _of_ids(column: Any, ids: Sequence[int]) -> tuple[Any, set[int] | None]:
    """A condition on ``column`` that selects the rows of ``ids`` (at most one ``IN`` chunk).

    When the ids are dense (a month's incidents mostly are), their range
    ``BETWEEN min AND max`` (one index range scan, no list of bound
    parameters) and the set of ids to keep from its rows; else ``IN (…)``
    and None (every row is one of them).
    """
    if not ids:
        return column.in_(ids), None
    lo, hi = min(ids), max(ids)
    if hi - lo < 2 * len(ids):
        return column.between(lo, hi), set(ids)
    return column.in_(ids), None


def read_incidents(s: Session, ids: Sequence[int]) -> list[IncidentView]:
    """The incidents ``ids`` (at most one ``IN`` chunk), in id order."""
    where, keep = _of_ids(Incident.id, ids)
    rows = s.execute(select(*_VIEW_COLUMNS).where(where).order_by(Incident.id)).all()
    make = IncidentView._make
    if keep is None:
        return [make(row) for row in rows]
    return [make(row) for row in rows if row[0] in keep]


JUDGE_CHUNK = IN_CHUNK
"""Incidents judged at a time by :func:`judge_chunks` (what a reader of the month holds)."""


def parse_as_of(text: str, where: str = "--as-of") -> datetime:
    """An ``as_of`` given by a user: ISO 8601 with a zone, to the whole second (UTC).

    Raises:
        InputError: Not an instant, or one without a zone; names ``where``.
    """
    try:
        value = parse_instant(text)
    except InputError as exc:
        msg = f"{where}: {exc} (give an ISO 8601 instant with a zone, e.g. 2026-11-01T00:00+08:00)"
        raise InputError(msg, field=where) from None
    return whole_second(value)


@dataclass(frozen=True)
class StoredNc:
    """What the store knew of a nonconformity at ``as_of``."""

    state: str
    ticket_ref: str | None
    ticket_url: str | None
    closed_at: datetime | None
    revision: int
    withdrawn_at: datetime | None


@dataclass(frozen=True)
class Judged:
    """One incident of the month, evaluated as of the instant."""

    incident: IncidentView
    evaluation: Evaluation
    status: str
    """The source status of the last change seen at ``as_of``."""
    policy: str
    policy_version: str
    survey: tuple[str | None, str | None]
    ncs: dict[str, StoredNc | None]
    """Finding key → the stored nonconformity as known at ``as_of`` (None: not raised yet)."""

    @cached_property
    def values(self) -> dict[str, Any]:
        """Its verdicts as record columns (plus ``status``, ``policy``, ``policy_version``).

        Built when first read (the export's rows read it, the report does not).
        """
        return {
            **evaluation_values(_incident(self.incident), self.evaluation),
            "status": self.status,
            "policy": self.policy,
            "policy_version": self.policy_version,
        }

    @cached_property
    def sla_disagreement(self) -> str | None:
        """Which of the source's SLA flags disagree with the verdicts (``values``' column)."""
        return disagreement(_incident(self.incident), self.evaluation)


@dataclass(frozen=True)
class Period:
    """A policy's month as of an instant."""

    policy: str
    month: str
    as_of: datetime
    incidents: list[Judged]


def _candidates(
    s: Session, sources: Sequence[str], start: datetime, end: datetime, as_of: datetime
) -> list[int]:
    """Incidents that entered resolved or closed within the month, at or before ``as_of``."""
    upto = min(end, as_of + timedelta(seconds=1))
    return sorted(
        s.scalars(
            select(StatusEvent.incident_id)
            .distinct()
            .join(Incident, Incident.id == StatusEvent.incident_id)
            .where(
                Incident.source.in_(sources),
                StatusEvent.category.in_(_ENDS),
                StatusEvent.at >= start,
                StatusEvent.at < upto,
            )
        )
    )


def month_candidates(
    rt: Runtime, s: Session, policy: str, months: Sequence[str], as_of: datetime
) -> dict[str, list[int]]:
    """The incidents :func:`judge_chunks` judges for each of ``months``, in one read.

    What ``_candidates`` gives month by month (the incidents of the policy's
    sources that entered resolved or closed within the month, at or before
    ``as_of``), from one scan of the end events of all the months: a
    report's twelve-month trend reads the status events once, not twelve times.
    """
    tz = rt.policy(policy).calendar.tz
    sources = [name for name, cfg in rt.config.sources.items() if cfg.policy == policy]
    bounds = sorted((*month_bounds(m, tz), m) for m in months)
    limit = seen_before(as_of)
    found: dict[str, set[int]] = {m: set() for m in months}
    if not bounds:
        return {}
    starts = [b[0] for b in bounds]
    for inc_id, at in s.execute(
        select(StatusEvent.incident_id, StatusEvent.at)
        .join(Incident, Incident.id == StatusEvent.incident_id)
        .where(
            Incident.source.in_(sources),
            StatusEvent.category.in_(_ENDS),
            StatusEvent.at >= bounds[0][0],
            StatusEvent.at < min(max(b[1] for b in bounds), limit),
        )
    ):
        i = bisect_right(starts, at) - 1
        if i >= 0 and at < bounds[i][1] and at < limit:
            found[bounds[i][2]].add(inc_id)
    return {m: sorted(ids) for m, ids in found.items()}


def seen_before(as_of: datetime) -> datetime:
    """The first instant a fact is not seen at ``as_of``: ``x < seen_before(as_of)`` is
    :func:`core.compliance.seen_at` (``x`` truncated to the second is at or before
    ``as_of`` truncated) for an aware ``x``, in one comparison."""
    return whole_second(as_of) + timedelta(seconds=1)


def _sent_before(s: Session, keys: Sequence[str], kind: str, as_of: datetime) -> set[str]:
    limit = seen_before(as_of)
    sent: set[str] = set()
    for chunk in chunks(list(keys)):
        for key, at in s.execute(
            select(OutboxItem.idempotency_key, OutboxItem.sent_at).where(
                OutboxItem.idempotency_key.in_(chunk),
                OutboxItem.kind == kind,
                OutboxItem.sent_at.is_not(None),
            )
        ):
            if at is not None and at < limit:
                sent.add(key)
    return sent


def _surveys(
    s: Session, incs: Sequence[IncidentView], as_of: datetime
) -> dict[int, tuple[str | None, str | None]]:
    ids = [i.id for i in incs]
    rows: list[Any] = []
    for chunk in chunks(ids):
        where, keep = _of_ids(SurveyInvitation.incident_id, chunk)
        rows.extend(
            row
            for row in s.execute(
                select(
                    SurveyInvitation.incident_id,
                    SurveyInvitation.state,
                    SurveyInvitation.channel,
                    SurveyInvitation.created_at,
                ).where(where)
            )
            if keep is None or row.incident_id in keep
        )
    by_id = {i.id: i for i in incs}
    keys = [survey_key(_incident(by_id[r.incident_id])) for r in rows]
    sent = _sent_before(s, keys, "survey", as_of)
    limit = seen_before(as_of)
    out: dict[int, tuple[str | None, str | None]] = {}
    for row, key in zip(rows, keys, strict=True):
        if not row.created_at < limit:
            continue
        if row.state == "not_surveyable":
            out[row.incident_id] = ("not_surveyable", row.channel)
        else:
            out[row.incident_id] = ("sent" if key in sent else "planned", row.channel)
    return out


def _stored_ncs(s: Session, keys: Sequence[str], as_of: datetime) -> dict[str, StoredNc]:
    """The stored nonconformities among ``keys`` that existed at ``as_of``, as they were."""
    limit = seen_before(as_of)
    found: dict[str, Any] = {}
    for chunk in chunks(list(keys)):
        for nc in s.execute(
            select(
                Nonconformity.id,
                Nonconformity.dedup_key,
                Nonconformity.created_at,
                Nonconformity.closed_at,
                Nonconformity.withdrawn_at,
                Nonconformity.ticket_ref,
                Nonconformity.ticket_url,
            ).where(Nonconformity.dedup_key.in_(chunk))
        ):
            if nc.created_at < limit:
                found[nc.dedup_key] = nc
    revisions: dict[int, int] = {}
    withdrawn_at: dict[int, datetime | None] = {}
    for ids in chunks([nc.id for nc in found.values()]):
        for nc_id, revision, at, kind in s.execute(
            select(
                NonconformityEvent.nonconformity_id,
                NonconformityEvent.revision,
                NonconformityEvent.at,
                NonconformityEvent.kind,
            )
            .where(NonconformityEvent.nonconformity_id.in_(ids))
            .order_by(NonconformityEvent.revision)
        ):
            if at < limit:
                revisions[nc_id] = max(revisions.get(nc_id, 1), revision)
                if kind in ("withdrawn", "reinstated"):  # the last one at as_of decides
                    withdrawn_at[nc_id] = at if kind == "withdrawn" else None
    ticketed = _sent_before(s, list(found), "ticket", as_of)
    out: dict[str, StoredNc] = {}
    for key, nc in found.items():
        closed = nc.closed_at if nc.closed_at and nc.closed_at < limit else None
        if nc.id in withdrawn_at:  # from the history: a reinstatement clears it
            withdrawn = withdrawn_at[nc.id]
        else:  # no withdrawal in the history (rows older than it)
            withdrawn = nc.withdrawn_at if nc.withdrawn_at and nc.withdrawn_at < limit else None
        has_ticket = key in ticketed
        state = (
            "closed"
            if closed
            else "withdrawn"
            if withdrawn
            else "ticketed"
            if has_ticket
            else "open"
        )
        out[key] = StoredNc(
            state=state,
            ticket_ref=nc.ticket_ref if has_ticket else None,
            ticket_url=nc.ticket_url if has_ticket else None,
            closed_at=closed,
            revision=revisions.get(nc.id, 1),
            withdrawn_at=withdrawn,
        )
    return out


def facts_seen_at(
    s: Session, incs: Sequence[IncidentView] | Sequence[Incident], as_of: datetime
) -> dict[int, IncidentFacts]:
    """The incidents' facts seen at ``as_of`` (those created after it left out).

    The same facts as :func:`core.loop.facts.load_facts` with ``as_of``,
    read in one pass: each history holds only the changes seen at ``as_of``.
    """
    limit = seen_before(as_of)
    ids = [i.id for i in incs]
    history: dict[int, list[StatusChange]] = {}
    categories = {c.value: c for c in Category}
    for chunk in chunks(ids):
        where, keep = _of_ids(StatusEvent.incident_id, chunk)
        for inc_id, at, category, status in s.execute(
            select(
                StatusEvent.incident_id, StatusEvent.at, StatusEvent.category, StatusEvent.status
            )
            .where(where)
            .order_by(StatusEvent.incident_id, StatusEvent.seq)
        ):
            if at < limit and (keep is None or inc_id in keep):
                cat = categories.get(category) or Category(category)
                history.setdefault(inc_id, []).append(StatusChange(at, cat, status))
    attempts, answers = load_answers(s, ids, before=limit)
    return {
        inc.id: IncidentFacts(
            priority=inc.priority,
            created_at=inc.created_at,
            history=history.get(inc.id, []),
            attempts=attempts.get(inc.id, []),
            survey_answers=answers.get(inc.id, []),
        )
        for inc in incs
        if inc.created_at < limit
    }


@dataclass(frozen=True)
class Chunk:
    """Some of a month's incidents judged as of an instant, and the facts they were judged on."""

    incidents: list[Judged]
    """In incident id order (not the period's order)."""
    facts: dict[int, IncidentFacts]


def judge_chunks(
    rt: Runtime,
    s: Session,
    policy: str,
    month: str,
    as_of: datetime,
    *,
    rules: Policy | None = None,
    candidates: Sequence[int] | None = None,
) -> Iterator[Chunk]:
    """The policy's month judged from the stored facts seen at ``as_of``, a chunk at a time.

    What :func:`judge_period` returns, without holding the month: a reader
    that folds each chunk keeps only its aggregates (the report). ``rules``:
    judge under these rules instead of the policy's current ones.
    ``candidates``: the month's from :func:`month_candidates` (else read here).
    """
    pol = rules or rt.policy(policy)
    as_of = whole_second(as_of)
    sources = [name for name, cfg in rt.config.sources.items() if cfg.policy == policy]
    start, end = month_bounds(month, pol.calendar.tz)
    starts = tracking_starts(rt)
    if candidates is None:
        candidates = _candidates(s, sources, start, end, as_of)
    no_survey: tuple[str | None, str | None] = (None, None)
    for chunk in chunks(candidates, JUDGE_CHUNK):
        incs = read_incidents(s, chunk)
        facts = facts_seen_at(s, incs, as_of)
        surveys = _surveys(s, incs, as_of)
        evaluated: list[tuple[IncidentView, Evaluation, list[tuple[str, str]]]] = []
        for inc in incs:
            seen = facts.get(inc.id)
            if seen is None:
                continue
            ev = evaluate_incident(seen, pol, as_of, tracking_from=starts.get(inc.source) or as_of)
            if ev.month == month:
                keys = [(f.key, dedup_key(_incident(inc), f.key)) for f in ev.findings]
                evaluated.append((inc, ev, keys))
        stored = _stored_ncs(s, [k for *_, keys in evaluated for _, k in keys], as_of)
        judged: list[Judged] = []
        for inc, ev, keys in evaluated:
            history = facts[inc.id].history
            judged.append(
                Judged(
                    inc,
                    ev,
                    history[-1].status if history else inc.status,
                    policy,
                    pol.version,
                    surveys.get(inc.id, no_survey),
                    {key: stored.get(dedup) for key, dedup in keys},
                )
            )
        yield Chunk(judged, facts)


def period_order(j: Judged, as_of: datetime) -> tuple[datetime, int]:
    """A judged incident's place in its period: by resolution, then incident id."""
    return (j.evaluation.resolved_at or as_of, j.incident.id)


def judge_period(
    rt: Runtime,
    s: Session,
    policy: str,
    month: str,
    as_of: datetime,
    *,
    rules: Policy | None = None,
) -> Period:
    """Evaluate the policy's month from the stored facts seen at ``as_of`` (writes nothing).

    ``rules``: judge the policy's incidents under these rules instead of the
    policy's current ones (a recompute under another version). The whole
    month in memory, in period order; :func:`judge_chunks` streams it.
    """
    as_of = whole_second(as_of)
    judged = [
        j
        for chunk in judge_chunks(rt, s, policy, month, as_of, rules=rules)
        for j in chunk.incidents
    ]
    judged.sort(key=lambda j: period_order(j, as_of))
    return Period(policy, month, as_of, judged)


def _open(nc: StoredNc | None) -> bool:
    return nc is None or nc.state != "closed"


def row_as_of(j: Judged, *, tz: tzinfo, unmask: bool) -> dict[str, Any]:
    """A judged incident's export row (the same columns as the stored export)."""
    ncs = [(f.rule, f.severity, _open(j.ncs[f.key])) for f in j.evaluation.findings]
    return incident_row(j.values, j.incident, j.survey, ncs, tz=tz, unmask=unmask)


def rows_as_of(period: Period, *, tz: tzinfo, unmask: bool) -> Iterator[dict[str, Any]]:
    """The export rows of ``period`` (the same columns as the stored export)."""
    for j in period.incidents:
        yield row_as_of(j, tz=tz, unmask=unmask)


def nc_states(j: Judged) -> list[NonconformityState]:
    """A judged incident's nonconformities as the indicators count them."""
    return [
        NonconformityState(
            rule=f.rule,
            severity=f.severity,
            closed=not _open(j.ncs[f.key]),
            deadline=f.deadline,
        )
        for f in j.evaluation.findings
    ]


def indicators_as_of(rt: Runtime, period: Period) -> MonthlyIndicators:
    """The month's indicators (R4) as of the period's instant."""
    pol = rt.policy(period.policy)
    states = [state for j in period.incidents for state in nc_states(j)]
    rows = [(j.incident.priority, j.evaluation) for j in period.incidents]
    return monthly_indicators(period.month, rows, states, period.as_of, policy=pol)


def month_indicators_as_of(
    rt: Runtime, s: Session, policy: str, month: str, as_of: datetime
) -> MonthlyIndicators:
    """:func:`indicators_as_of` of the month, folded as judged (the month never held whole)."""
    as_of = whole_second(as_of)
    fold = IndicatorsFold(month, as_of, policy=rt.policy(policy))
    for chunk in judge_chunks(rt, s, policy, month, as_of):
        for j in chunk.incidents:
            fold.add(j.incident.priority, j.evaluation)
            for state in nc_states(j):
                fold.add_nc(state)
    return fold.result()
