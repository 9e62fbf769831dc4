"""reconcile: tie each response to its incident, or queue it for review.

In order: the correlation token qloop issued; else the provider's own
reference for a task or invitation of that channel; else the customer's
contact (phone or e-mail) and a time window after a resolution. An answer
that matches nothing, or more than one incident, goes to the review queue
with the reason and the candidates: never guessed, never dropped. An
answer to a complaint's follow-up call (its token is the complaint's
``follow_up_token``) is matched with status ``follow_up``: it belongs to the
complaint (:mod:`core.complaints`), not to the incident's callback verdicts.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.orm import Session

from core.errors import NotFoundError, StateError
from core.loop._bulk import chunks, insert_rows
from core.loop.common import StepResult, audit, in_scope
from core.privacy import email_key, phone_key
from core.runtime import Runtime
from core.store.models import (
    CallbackTask,
    Complaint,
    Incident,
    Match,
    Response,
    StatusEvent,
    SurveyInvitation,
)
from core.timeutil import format_seconds

BATCH = 1000
_RESPONSE_COLUMNS = (
    Response.id,
    Response.kind,
    Response.channel,
    Response.occurred_at,
    Response.correlation_token,
    Response.provider_ref,
    Response.contact_phone,
    Response.contact_email,
    # only collect's mark of an invalid answer, extracted by the database: not the
    # whole raw payload decoded per response
    Response.raw["_qloop_error"].as_string().label("error"),
)
"""What matching reads of a response (as rows, not ORM instances)."""


def _by_token(s: Session, resp: Response) -> int | None:
    if not resp.correlation_token:
        return None
    model = CallbackTask if resp.kind == "callback_attempt" else SurveyInvitation
    return s.scalar(
        select(model.incident_id).where(model.correlation_token == resp.correlation_token)
    )


def _by_provider_ref(s: Session, resp: Response) -> int | None:
    if not resp.provider_ref:
        return None
    model = CallbackTask if resp.kind == "callback_attempt" else SurveyInvitation
    ids = set(
        s.scalars(
            select(model.incident_id).where(
                model.provider_ref == resp.provider_ref, model.channel == resp.channel
            )
        )
    )
    return ids.pop() if len(ids) == 1 else None


def _by_contact(s: Session, resp: Response, window: timedelta) -> list[int]:
    keys = []
    if (pk := phone_key(resp.contact_phone)) is not None:
        keys.append(Incident.phone_key == pk)
    if (ek := email_key(resp.contact_email)) is not None:
        keys.append(Incident.email_key == ek)
    if not keys:
        return []
    earliest = resp.occurred_at - window
    return sorted(
        set(
            s.scalars(
                select(StatusEvent.incident_id)
                .join(Incident, Incident.id == StatusEvent.incident_id)
                .where(
                    or_(*keys),
                    StatusEvent.category.in_(("resolved", "closed")),
                    StatusEvent.at >= earliest,
                    StatusEvent.at <= resp.occurred_at,
                )
            )
        )
    )


Decision = tuple[int | None, str | None, str, str | None, list[int]]
"""(incident id, method, status, reason, candidates) of one response's match."""


def _follow_up_owner(s: Session, resp: Response) -> int | None:
    """The incident of the complaint whose follow-up call ``resp`` answers (None: not one)."""
    if resp.kind != "callback_attempt" or not resp.correlation_token:
        return None
    return s.scalar(
        select(Complaint.incident_id).where(Complaint.follow_up_token == resp.correlation_token)
    )


def _rows_by(
    s: Session, model: type[Any], columns: tuple[str, ...], values: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``columns`` of ``model``'s rows whose first column is one of ``values``, one query
    per 1,000 values.

    The columns are plain text and integers (no type conversion): on SQLite the
    statement goes to the driver as text, without SQLAlchemy rendering an ``IN``
    list of bound parameters and a result row per row.
    """
    table = model.__table__
    conn = s.connection()
    found: list[tuple[Any, ...]] = []
    for chunk in chunks(values):
        if conn.dialect.name == "sqlite":
            sql = (
                f"SELECT {', '.join(columns)} FROM {table.name} "
                f"WHERE {columns[0]} IN ({', '.join('?' * len(chunk))})"
            )
            found.extend(conn.exec_driver_sql(sql, tuple(chunk)).fetchall())
        else:
            query = select(*(table.c[c] for c in columns)).where(table.c[columns[0]].in_(chunk))
            found.extend(tuple(row) for row in s.execute(query))
    return found


class _Prefetched:
    """Token and provider-reference owners of a batch of responses, read with ``IN`` queries."""

    def __init__(self, s: Session, batch: Sequence[Response]) -> None:
        self.tokens: dict[tuple[bool, str], int] = {}
        self.follow_ups: dict[str, int] = {}
        calls = sorted(
            {
                r.correlation_token
                for r in batch
                if r.kind == "callback_attempt" and r.correlation_token
            }
        )
        for token, inc_id in _rows_by(s, Complaint, ("follow_up_token", "incident_id"), calls):
            if token is not None:
                self.follow_ups[token] = inc_id
        self.refs: dict[tuple[bool, str | None, str | None], set[int]] = {}
        for is_callback in (True, False):
            model = CallbackTask if is_callback else SurveyInvitation
            mine = [r for r in batch if (r.kind == "callback_attempt") == is_callback]
            tokens = sorted({r.correlation_token for r in mine if r.correlation_token})
            for token, inc_id in _rows_by(s, model, ("correlation_token", "incident_id"), tokens):
                self.tokens.setdefault((is_callback, token), inc_id)
            refs = sorted({r.provider_ref for r in mine if r.provider_ref})
            columns = ("provider_ref", "channel", "incident_id")
            for ref, channel, inc_id in _rows_by(s, model, columns, refs):
                self.refs.setdefault((is_callback, ref, channel), set()).add(inc_id)

    def by_token(self, resp: Response) -> int | None:
        if not resp.correlation_token:
            return None
        return self.tokens.get((resp.kind == "callback_attempt", resp.correlation_token))

    def follow_up(self, resp: Response) -> int | None:
        if resp.kind != "callback_attempt" or not resp.correlation_token:
            return None
        return self.follow_ups.get(resp.correlation_token)

    def by_provider_ref(self, resp: Response) -> int | None:
        if not resp.provider_ref:
            return None
        ids = self.refs.get((resp.kind == "callback_attempt", resp.provider_ref, resp.channel))
        return next(iter(ids)) if ids and len(ids) == 1 else None


class _Queried:
    """Token and provider-reference owners of one response, one query each."""

    def __init__(self, s: Session) -> None:
        self.s = s

    def by_token(self, resp: Response) -> int | None:
        return _by_token(self.s, resp)

    def by_provider_ref(self, resp: Response) -> int | None:
        return _by_provider_ref(self.s, resp)

    def follow_up(self, resp: Response) -> int | None:
        return _follow_up_owner(self.s, resp)


class _QueriedContacts:
    """The incidents resolved near an answer from its contact, one query per answer."""

    def candidates(self, s: Session, resp: Response, window: timedelta) -> list[int]:
        return _by_contact(s, resp, window)


Resolutions = list[tuple[datetime, int]]
"""(when, incident id) of the resolved or closed status events of one contact, by time."""


class _Contacts:
    """The resolutions of the contacts that answers are matched by, read once per run.

    An answer without a token or provider reference is matched by its
    contact and a window after a resolution (:func:`_by_contact`): one query
    per answer read the history of every incident of that contact, which
    grows with the month. Here each batch reads, in one query, the resolved
    and closed events of the contacts it needs that no earlier batch read,
    within the span of the unmatched answers' windows (``lo``..``hi``, read
    when the run starts); the answers are then matched in memory with the
    same bounds as the query. An answer outside that span (it arrived after
    the run started) is matched by :func:`_by_contact`.
    """

    def __init__(self, lo: datetime | None, hi: datetime | None) -> None:
        self.lo, self.hi = lo, hi
        self.phones: dict[str, Resolutions] = {}
        self.emails: dict[str, Resolutions] = {}

    @classmethod
    def for_run(
        cls, s: Session, window: timedelta, scope: ColumnElement[bool] | None = None
    ) -> _Contacts:
        """The span of the answers not matched yet (in ``scope``), widened by ``window``."""
        lo, hi = s.execute(
            select(func.min(Response.occurred_at), func.max(Response.occurred_at))
            .where(Response.matched.is_(False))
            .where(scope if scope is not None else true())
        ).one()
        return cls(lo - window if lo is not None else None, hi)

    def _covers(self, resp: Response, window: timedelta) -> bool:
        if self.lo is None or self.hi is None:
            return False
        return self.lo <= resp.occurred_at - window and resp.occurred_at <= self.hi

    def prefetch(self, s: Session, batch: Sequence[Response], known: _Prefetched) -> None:
        """Read the resolutions of the contacts of ``batch``'s answers that need them."""
        phones: set[str] = set()
        emails: set[str] = set()
        for resp in batch:
            if (
                known.follow_up(resp) is not None
                or known.by_token(resp) is not None
                or known.by_provider_ref(resp) is not None
            ):
                continue
            if (pk := phone_key(resp.contact_phone)) is not None and pk not in self.phones:
                phones.add(pk)
            if (ek := email_key(resp.contact_email)) is not None and ek not in self.emails:
                emails.add(ek)
        if not (phones or emails) or self.lo is None or self.hi is None:
            return
        for pk in phones:
            self.phones[pk] = []
        for ek in emails:
            self.emails[ek] = []
        wanted = [("phone", k) for k in sorted(phones)] + [("email", k) for k in sorted(emails)]
        for chunk in chunks(wanted):
            chunk_phones = [k for kind, k in chunk if kind == "phone"]
            chunk_emails = [k for kind, k in chunk if kind == "email"]
            keys = []
            if chunk_phones:
                keys.append(Incident.phone_key.in_(chunk_phones))
            if chunk_emails:
                keys.append(Incident.email_key.in_(chunk_emails))
            rows = s.execute(
                select(
                    Incident.phone_key, Incident.email_key, StatusEvent.at, StatusEvent.incident_id
                )
                .join(Incident, Incident.id == StatusEvent.incident_id)
                .where(
                    or_(*keys),
                    StatusEvent.category.in_(("resolved", "closed")),
                    StatusEvent.at >= self.lo,
                    StatusEvent.at <= self.hi,
                )
            )
            for pk, ek, at, inc_id in rows:
                if pk in phones:
                    self.phones[pk].append((at, inc_id))
                if ek in emails:
                    self.emails[ek].append((at, inc_id))
        for pk in phones:
            self.phones[pk].sort()
        for ek in emails:
            self.emails[ek].sort()

    def candidates(self, s: Session, resp: Response, window: timedelta) -> list[int]:
        """The incidents :func:`_by_contact` finds for ``resp``, from what was read."""
        pk, ek = phone_key(resp.contact_phone), email_key(resp.contact_email)
        if pk is None and ek is None:
            return []
        found = [] if pk is None else self.phones.get(pk)
        also = [] if ek is None else self.emails.get(ek)
        if found is None or also is None or not self._covers(resp, window):
            return _by_contact(s, resp, window)
        earliest, latest = resp.occurred_at - window, resp.occurred_at
        ids: set[int] = set()
        for resolutions in (found, also):
            start = bisect_left(resolutions, earliest, key=_at)
            stop = bisect_right(resolutions, latest, key=_at)
            ids.update(inc_id for _, inc_id in resolutions[start:stop])
        return sorted(ids)


def _at(resolution: tuple[datetime, int]) -> datetime:
    return resolution[0]


def _decide(
    s: Session,
    resp: Any,
    window: timedelta,
    known: _Prefetched | _Queried,
    contacts: _Contacts | _QueriedContacts,
) -> Decision:
    """A complaint's follow-up token, else token, else provider reference, else contact and
    window; else review. ``resp`` is a row of :data:`_RESPONSE_COLUMNS`."""
    error = resp.error  # collect's "_qloop_error" (a score off its scale), or None
    found: Decision
    if (inc := known.follow_up(resp)) is not None:
        # a complaint's follow-up call: its own record, never a callback of the incident
        found = (inc, "token", "follow_up", None, [])
    elif (inc := known.by_token(resp)) is not None:
        found = (inc, "token", "matched", None, [])
    elif (inc := known.by_provider_ref(resp)) is not None:
        found = (inc, "provider_ref", "matched", None, [])
    else:
        candidates = contacts.candidates(s, resp, window)
        if len(candidates) == 1:
            found = (candidates[0], "contact", "matched", None, [])
        elif candidates:
            return (
                None,
                None,
                "review",
                f"ambiguous: {len(candidates)} incidents match the contact "
                f"within {format_seconds(window.total_seconds())}",
                candidates,
            )
        else:
            reason = "unmatched: no token, provider reference or contact match"
            return (None, None, "review", reason, [])
    if error:
        inc_id = found[0]
        return (None, found[1], "review", f"invalid answer: {error}", [inc_id] if inc_id else [])
    return found


def reconcile(
    rt: Runtime, channels: Collection[str] | None = None, *, others: bool = False
) -> StepResult:
    """Match every response not matched yet.

    With ``channels``, only the responses of those channels (and, with
    ``others``, of channels no longer enabled: :func:`core.loop.common.in_scope`).
    A response's match is its own row, so reconciles of disjoint channels
    may run at once (each channel's collect job reconciles its own); the
    incidents they touch get their revision raised in the database
    (``revision + 1``), so two at once both count.
    """
    result = StepResult("reconcile")
    window = timedelta(seconds=rt.config.matching_window_s)
    scope = in_scope(Response.channel, channels, rt.channel_names(), others)
    with rt.db.session() as s:
        contacts = _Contacts.for_run(s, window, scope)
    while True:
        with rt.db.session() as s:
            batch: list[Any] = list(  # plain rows with the attributes _decide reads
                s.execute(
                    select(*_RESPONSE_COLUMNS)
                    .where(Response.matched.is_(False))
                    .where(scope)
                    .order_by(Response.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            known = _Prefetched(s, batch)
            contacts.prefetch(s, batch, known)
            touched: set[int] = set()
            matches: list[dict[str, object]] = []
            for resp in batch:
                incident_id, method, status, reason, candidates = _decide(
                    s, resp, window, known, contacts
                )
                matches.append(
                    {
                        "response_id": resp.id,
                        "incident_id": incident_id,
                        "method": method,
                        "status": status,
                        "reason": reason,
                        "candidates": candidates,
                        "decided_at": rt.now(),
                        "decided_by": "qloop",
                    }
                )
                if status == "matched" and incident_id is not None:
                    touched.add(incident_id)
                    result.counts[f"matched_{method}"] += 1
                elif status == "follow_up":
                    result.counts["follow_up"] += 1
                else:
                    result.counts["review"] += 1
            insert_rows(s, Match, matches)
            for chunk in chunks([r.id for r in batch]):
                s.execute(update(Response).where(Response.id.in_(chunk)).values(matched=True))
            _bump_revisions(s, sorted(touched))
    return result


def _bump_revisions(s: Session, ids: list[int]) -> None:
    """Raise the revision of incidents ``ids`` (ascending) so evaluate and plan look again.

    On PostgreSQL the rows are locked first in id order (``FOR NO KEY
    UPDATE``, as the update itself would): two reconciles of different
    channels touching the same incidents then wait for each other instead
    of deadlocking.
    """
    for chunk in chunks(ids):
        if s.connection().dialect.name == "postgresql":
            s.execute(
                select(Incident.id)
                .where(Incident.id.in_(chunk))
                .order_by(Incident.id)
                .with_for_update(key_share=True)
            ).all()
        s.execute(
            update(Incident).where(Incident.id.in_(chunk)).values(revision=Incident.revision + 1)
        )


def resolve_review(
    rt: Runtime, match_id: int, incident_id: int | None, actor: str, note: str | None = None
) -> Match:
    """Settle a review item: tie it to ``incident_id``, or dismiss it when None."""
    with rt.db.session() as s:
        match = s.get(Match, match_id)
        if match is None or match.status != "review":
            msg = f"review item {match_id} does not exist or is already settled"
            raise StateError(msg)
        if incident_id is not None and s.get(Incident, incident_id) is None:
            msg = f"incident {incident_id} does not exist"
            raise NotFoundError(msg)
        match.incident_id = incident_id
        match.status = "matched" if incident_id is not None else "dismissed"
        match.method = "manual" if incident_id is not None else None
        match.reason = note or match.reason
        match.decided_at, match.decided_by = rt.now(), actor
        if incident_id is not None:
            s.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(revision=Incident.revision + 1)
            )
        audit(
            s,
            rt,
            "review.resolve",
            "match",
            match_id,
            actor=actor,
            incident_id=incident_id,
            note=note,
        )
        return match
