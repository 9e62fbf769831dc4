"""collect: outcomes reported by a channel since its cursor, stored once each.

A response is keyed by (channel, provider event id): a duplicate delivery
changes nothing. A collect that ends without error moves the channel's
collection watermark (``collected_until``) to the instant it started: every
outcome the channel reported before then is stored. For a channel that only
receives webhooks, the collect step has nothing to read and the watermark is
the step's start all the same (deliveries are taken as prompt; one arriving
later updates or withdraws what was raised without it). A score outside
the channel's scale is kept with the raw payload and an error, and
reconcile sends it to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.compliance import normalise_score
from core.errors import InputError
from core.loop import rejects
from core.loop._bulk import chunks, insert_rows
from core.loop.common import (
    StepResult,
    collect_state_name,
    connector_state,
    finish_run,
    log,
    resumable,
    start_run,
)
from core.records import Outcome
from core.runtime import Runtime
from core.store.models import Response
from core.timeutil import to_utc

_normalised = lru_cache(maxsize=4096, typed=True)(normalise_score)
"""``normalise_score`` remembered per (score, min, max) of its type: a channel's answers
take few distinct values, and the exact arithmetic costs ~0.2 ms each (errors are not
remembered: they are raised again)."""


def response_row(channel: str, out: Outcome, now: datetime) -> dict[str, Any]:
    """The ``response`` row of one outcome received at ``now`` (a score off its scale is
    kept with the raw payload and an error, for reconcile to send to review)."""
    raw = dict(out.raw)
    score = None
    if out.score is not None:
        try:
            score = _normalised(out.score, out.scale[0], out.scale[1])
        except InputError as exc:
            raw["_qloop_error"] = str(exc)
    return {
        "channel": channel,
        "provider_event_id": out.provider_event_id,
        "kind": out.kind,
        "occurred_at": to_utc(out.occurred_at),
        "received_at": now,
        "correlation_token": out.correlation_token,
        "provider_ref": out.provider_ref,
        "contact_phone": out.contact.phone if out.contact else None,
        "contact_email": out.contact.email if out.contact else None,
        "reached": out.reached,
        "confirmed": out.confirmed,
        "score_raw": out.score,
        "scale_min": out.scale[0],
        "scale_max": out.scale[1],
        "score": score,
        "comment": out.comment,
        "agent": out.agent,
        "raw": raw,
        "matched": False,
    }


def _new_rows(
    session: Session, channel: str, outcomes: Sequence[Outcome], now: datetime, result: StepResult
) -> list[dict[str, Any]]:
    """The response rows of the outcomes not stored yet, counted in ``result``."""
    result.counts["seen"] += len(outcomes)
    known: set[str] = set()
    for chunk in chunks(sorted({o.provider_event_id for o in outcomes})):
        known.update(
            session.scalars(
                select(Response.provider_event_id).where(
                    Response.channel == channel, Response.provider_event_id.in_(chunk)
                )
            )
        )
    rows: list[dict[str, Any]] = []
    for out in outcomes:
        if out.provider_event_id in known:
            result.counts["duplicates"] += 1
            continue
        known.add(out.provider_event_id)
        rows.append(response_row(channel, out, now))
        result.counts["created"] += 1
    return rows


def store_outcomes(
    session: Session, channel: str, outcomes: Sequence[Outcome], now: datetime, result: StepResult
) -> list[Response]:
    """Insert the outcomes not stored yet; returns the new responses (caller commits)."""
    added = [Response(**row) for row in _new_rows(session, channel, outcomes, now, result)]
    session.add_all(added)
    return added


def _insert_outcomes(
    session: Session, channel: str, outcomes: Sequence[Outcome], now: datetime, result: StepResult
) -> None:
    """Like :func:`store_outcomes` with one multi-row insert (nothing returned)."""
    insert_rows(session, Response, _new_rows(session, channel, outcomes, now, result))


def collect(rt: Runtime, channel: str) -> StepResult:
    """Collect outcomes from ``channel``; commit each batch with its cursor."""
    result = StepResult(f"collect {channel}")
    conn = rt.channel(channel)
    state_name = collect_state_name(channel)
    started = rt.now()
    run_id, _ = start_run(rt, state_name, "collect")

    def load_cursor() -> str | None:
        with rt.db.session() as s:
            return connector_state(s, state_name).cursor

    def on_retry(exc: Exception, n: int) -> None:
        result.counts["retries"] += 1
        log.warning("collect %s: %s; resuming from the last cursor (restart %d)", channel, exc, n)

    error: str | None = None
    with rt.db.session() as s:
        pending = rejects.open_keys(s, state_name)
    try:
        for batch in resumable(conn.collect, load_cursor, on_retry, rt.sleep):
            with rt.db.session() as s:
                _insert_outcomes(s, channel, batch.outcomes, rt.now(), result)
                fixed = (k for o in batch.outcomes for k in (o.provider_event_id, o.provider_ref))
                rejects.resolve_keys(s, state_name, pending, fixed, rt.now())
                if batch.rejected:  # kept aside (qloop channels rejects): the others go on
                    stored = rejects.store(s, state_name, batch.rejected, rt.now())
                    result.counts["rejected"] += stored
                    pending.update(r.key[:200] for r in batch.rejected)
                connector_state(s, state_name).cursor = batch.cursor
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        result.errors.append(error)
        raise
    finally:
        finish_run(rt, run_id, state_name, result, error)
    with rt.db.session() as s:
        state = connector_state(s, state_name)
        if state.collected_until is None or state.collected_until < started:
            state.collected_until = started
    return result


def accept_outcomes(rt: Runtime, channel: str, outcomes: Sequence[Outcome]) -> StepResult:
    """Store outcomes pushed to qloop (webhooks) in one transaction, committed on return.

    A delivery seen before changes nothing (``counts["duplicates"]``). The
    caller answers the provider with 2xx only after this returns. Matching
    to incidents is reconcile's job, run right after or on its schedule.
    """
    result = StepResult(f"receive {channel}")
    if channel not in rt.config.channels:
        msg = f"unknown channel {channel!r}"
        raise InputError(msg, field="channel")
    for attempt in (1, 2):
        result = StepResult(f"receive {channel}")
        try:
            with rt.db.session() as s:
                store_outcomes(s, channel, outcomes, rt.now(), result)
        except IntegrityError:
            # the same delivery committed concurrently: the second pass sees it
            if attempt == 2:
                raise
            continue
        break
    return result
