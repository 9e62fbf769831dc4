"""reconcile: tie each response to its incident, or queue it for review.

In order: the correlation token qloop issued; else the provider's own
reference for a task or invitation of that channel; else the customer's
contact (phone or e-mail) and a time window after a resolution. An answer
that matches nothing, or more than one incident, goes to the review queue
with the reason and the candidates: never guessed, never dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.errors import StateError
from core.loop.common import StepResult, audit
from core.privacy import email_key, phone_key
from core.runtime import Runtime
from core.store.models import (
    CallbackTask,
    Incident,
    Match,
    Response,
    StatusEvent,
    SurveyInvitation,
)
from core.timeutil import format_seconds

BATCH = 1000


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


def match_response(s: Session, resp: Response, window: timedelta, now: datetime) -> Match:
    """Decide the match of one response (not committed)."""

    def decided(
        incident_id: int | None,
        method: str | None,
        status: str,
        reason: str | None,
        candidates: list[int] | None = None,
    ) -> Match:
        return Match(
            response_id=resp.id,
            incident_id=incident_id,
            method=method,
            status=status,
            reason=reason,
            candidates=candidates or [],
            decided_at=now,
        )

    error = resp.raw.get("_qloop_error") if isinstance(resp.raw, dict) else None
    if (inc := _by_token(s, resp)) is not None:
        found: Match = decided(inc, "token", "matched", None)
    elif (inc := _by_provider_ref(s, resp)) is not None:
        found = decided(inc, "provider_ref", "matched", None)
    else:
        candidates = _by_contact(s, resp, window)
        if len(candidates) == 1:
            found = decided(candidates[0], "contact", "matched", None)
        elif candidates:
            return decided(
                None,
                None,
                "review",
                f"ambiguous: {len(candidates)} incidents match the contact "
                f"within {format_seconds(window.total_seconds())}",
                candidates,
            )
        else:
            reason = "unmatched: no token, provider reference or contact match"
            return decided(None, None, "review", reason)
    if error:
        found.status, found.reason = "review", f"invalid answer: {error}"
        found.candidates = [found.incident_id] if found.incident_id else []
        found.incident_id = None
    return found


def reconcile(rt: Runtime) -> StepResult:
    """Match every response not matched yet."""
    result = StepResult("reconcile")
    window = timedelta(seconds=rt.config.matching_window_s)
    while True:
        with rt.db.session() as s:
            batch = list(
                s.scalars(
                    select(Response)
                    .where(Response.matched.is_(False))
                    .order_by(Response.id)
                    .limit(BATCH)
                )
            )
            if not batch:
                break
            touched: set[int] = set()
            for resp in batch:
                match = match_response(s, resp, window, rt.now())
                s.add(match)
                resp.matched = True
                if match.status == "matched" and match.incident_id is not None:
                    touched.add(match.incident_id)
                    result.counts[f"matched_{match.method}"] += 1
                else:
                    result.counts["review"] += 1
            if touched:
                s.execute(
                    update(Incident)
                    .where(Incident.id.in_(touched))
                    .values(revision=Incident.revision + 1)
                )
    return result


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
            raise StateError(msg)
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
