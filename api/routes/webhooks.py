"""Outcomes pushed to qloop: provider webhooks (signed) and the outcomes API (bearer).

A webhook delivery is verified by the channel's own :meth:`receive` (its
signature) before anything is stored; the outcomes are then stored and
committed, and only then does the provider get its 2xx. A delivery seen
before changes nothing. No bearer token is needed for a webhook (providers
sign instead); when one is sent it must be valid and allowed for the channel.

The intake path is kept short: a delivery without a token is answered by
the :class:`WebhookIntake` middleware, without the router (a delivery with
one goes to the route, which checks it); a delivery of up to
:data:`INLINE_BODY` bytes is verified on the event loop (no thread hop for
a fraction of a millisecond of work; larger ones go to a thread), and the
outcomes go to the process's :class:`api.intake.IntakeWriter`, which
commits the deliveries that arrive together in one transaction and answers
each only after that commit. No audit row is written per delivery.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AwareDatetime, BaseModel, Field
from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Permission, Principal, bearer, optional_principal, require
from api.intake import IntakeWriter
from api.problems import ApiError
from api.routes.common import RuntimeDep, problems
from api.routes.schemas import Accepted
from core.connector import WebhookReceiver
from core.errors import InputError, SignatureError
from core.limits import (
    COMMENT_MAX,
    EMAIL_MAX,
    EVENT_ID_MAX,
    NAME_MAX,
    PHONE_MAX,
    REF_MAX,
    TOKEN_MAX,
    check_outcome,
)
from core.loop.collect import accept_outcomes
from core.loop.intake import Delivery, Stored
from core.records import Contact, Outcome
from core.runtime import Runtime

router = APIRouter(tags=["outcomes"])

MAX_BODY = 1_000_000
"""Largest webhook delivery accepted, in bytes."""
INLINE_BODY = 64_000
"""Deliveries up to this size are verified on the event loop, larger ones in a thread."""

Channel = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")]


def _check_channel(rt: Runtime, channel: str, principal: Principal | None) -> None:
    if channel not in rt.config.channels:
        raise ApiError(404, f"unknown channel {channel!r}")
    if principal is not None and not principal.may_post_to(channel):
        raise ApiError(403, f"{principal.name!r} may not post outcomes for channel {channel!r}")


def _check_storable(channel: str, outcomes: list[Outcome]) -> None:
    """Refuse, before any write, outcomes the store cannot hold (whatever the receiver)."""
    for n, outcome in enumerate(outcomes):
        check_outcome(outcome, f"channel {channel!r}: outcome {n}")


def _store(rt: Runtime, channel: str, outcomes: list[Outcome]) -> Accepted:
    """Store and commit; no audit entry: deliveries are machine traffic (a token's use is
    audited once a day by :mod:`api.token_use`)."""
    result = accept_outcomes(rt, channel, outcomes)  # committed on return
    return Accepted(
        channel=channel,
        received=len(outcomes),
        created=result.counts["created"],
        duplicates=result.counts["duplicates"],
    )


def _verify(
    rt: Runtime,
    channel: str,
    headers: dict[str, str],
    body: bytes,
    url: str,
    principal: Principal | None,
) -> list[Outcome]:
    """The delivery's outcomes once its signature and content are checked (nothing stored)."""
    _check_channel(rt, channel, principal)
    conn = rt.channel(channel)
    if not isinstance(conn, WebhookReceiver):
        raise ApiError(404, f"channel {channel!r} does not receive webhooks")
    try:
        outcomes = list(conn.receive(headers, body, url))
        _check_storable(channel, outcomes)
    except RecursionError:
        msg = f"channel {channel!r}: the delivery is nested too deeply to read"
        raise ApiError(400, msg, slug="bad-delivery") from None
    except SignatureError as exc:  # forged, stale or unsigned: the sender is not trusted
        raise ApiError(401, f"channel {channel!r}: {exc.message}", slug="signature") from None
    except InputError as exc:  # authentic but malformed or unstorable: fixing it is the sender's
        raise ApiError(400, f"channel {channel!r}: {exc.message}", slug="bad-delivery") from None
    return outcomes


_WRITER_LOCK = threading.Lock()


def intake_writer(app: FastAPI) -> IntakeWriter:
    """The app's writer of deliveries (made on first use)."""
    writer: IntakeWriter | None = getattr(app.state, "intake", None)
    if writer is None:
        with _WRITER_LOCK:
            writer = getattr(app.state, "intake", None)
            if writer is None:
                writer = app.state.intake = IntakeWriter(app.state.rt)
    return writer


async def store_delivery(app: FastAPI, channel: str, outcomes: Sequence[Outcome]) -> Stored:
    """Store one verified delivery; returns once it is committed (raises if it was not).

    No audit entry: deliveries are machine traffic (a token's use is audited
    once a day by :mod:`api.token_use`).
    """
    return await asyncio.wrap_future(intake_writer(app).submit(Delivery(channel, outcomes)))


async def webhook_principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    """The caller when a bearer token is sent (checked in a thread), else None at once."""
    if request.headers.get("authorization") is None:
        return None
    principal: Principal | None = await run_in_threadpool(optional_principal, request, creds)
    return principal


async def _intake(
    app: FastAPI,
    channel: str,
    headers: dict[str, str],
    body: bytes,
    url: str,
    principal: Principal | None,
) -> dict[str, Any]:
    """Verify, store and commit one delivery; the 200 answer's JSON."""
    if len(body) > MAX_BODY:
        raise ApiError(413, f"webhook body larger than {MAX_BODY} bytes", slug="too-large")
    rt: Runtime = app.state.rt
    args = (rt, channel, headers, body, url, principal)
    if len(body) <= INLINE_BODY:
        outcomes = _verify(*args)
    else:
        outcomes = await run_in_threadpool(_verify, *args)
    stored = await store_delivery(app, channel, outcomes)
    accepted = Accepted(
        channel=channel,
        received=len(outcomes),
        created=stored.created,
        duplicates=stored.duplicates,
    )
    return accepted.model_dump()


def _too_large(declared: str | None) -> bool:
    return declared is not None and declared.isdigit() and int(declared) > MAX_BODY


@router.post(
    "/webhooks/{channel}",
    response_model=Accepted,
    responses=problems(400, 401, 403, 404, 413, 422),
)
async def receive_webhook(
    channel: Channel,
    request: Request,
    principal: Annotated[Principal | None, Depends(webhook_principal)],
) -> JSONResponse:
    """A provider's delivery: verified by its signature, stored, committed, then 200."""
    if _too_large(request.headers.get("content-length")):
        raise ApiError(413, f"webhook body larger than {MAX_BODY} bytes", slug="too-large")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = await _intake(request.app, channel, headers, body, str(request.url), principal)
    return JSONResponse(answer)


_FAST_PATH = re.compile(r"/webhooks/[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
"""The paths :class:`WebhookIntake` answers itself (the route's path and channel pattern)."""


class WebhookIntake:
    """ASGI middleware: a signed delivery without a bearer token, answered without the router.

    ``POST /webhooks/{channel}`` is machine traffic at hundreds of requests a
    second; FastAPI's routing, dependency solving and request objects cost
    more than verifying and storing a delivery. Sitting inside the app's
    own middleware (the request guard, the catch-all 500), this answers such
    a delivery with the route's own code (:func:`_intake`): the same checks,
    status codes and problem details (rendered by the app's exception
    handlers), the same JSON. Anything else goes on to the router,
    including a delivery that sends a bearer token (checked there) and an
    app mounted under a root path; the route stays declared, so the OpenAPI
    document is unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or _FAST_PATH.fullmatch(scope["path"]) is None
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "authorization" in headers:  # the route checks the token
            await self.app(scope, receive, send)
            return
        app: FastAPI = scope["app"]
        channel = scope["path"][len("/webhooks/") :]
        response: Response
        try:
            if _too_large(headers.get("content-length")):
                raise ApiError(413, f"webhook body larger than {MAX_BODY} bytes", slug="too-large")
            body = await _read_body(receive)
            if body is None:  # the client hung up before sending it all: nothing stored
                return
            url = str(URL(scope=scope))
            response = JSONResponse(await _intake(app, channel, headers, body, url, None))
        except Exception as exc:
            handled = await _handled(app, scope, receive, exc)
            if handled is None:
                raise  # unexpected: the app's catch-all answers 500 and logs it
            response = handled
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; None when the client disconnected before its end."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"webhook body larger than {MAX_BODY} bytes", slug="too-large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _handled(app: FastAPI, scope: Scope, receive: Receive, exc: Exception) -> Response | None:
    """The answer of the app's handler for ``exc`` (as the router's path would give it);
    None when no handler takes it."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None  # the catch-all's, outside this middleware
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            answer = handler(Request(scope, receive), exc)
            if inspect.isawaitable(answer):
                answer = await answer
            assert isinstance(answer, Response)
            return answer
    return None


class ContactIn(BaseModel):
    name: str | None = Field(None, max_length=NAME_MAX)
    phone: str | None = Field(None, max_length=PHONE_MAX)
    email: str | None = Field(None, max_length=EMAIL_MAX)


class OutcomeIn(BaseModel):
    """One answer reported through the API (a phone system's callback result…)."""

    provider_event_id: str = Field(min_length=1, max_length=EVENT_ID_MAX)
    kind: Literal["callback_attempt", "survey_answer"]
    occurred_at: AwareDatetime
    correlation_token: str | None = Field(None, max_length=TOKEN_MAX)
    provider_ref: str | None = Field(None, max_length=REF_MAX)
    contact: ContactIn | None = None
    reached: bool | None = None
    confirmed: bool | None = None
    score: float | None = Field(None, allow_inf_nan=False)
    scale: tuple[Annotated[float, Field(allow_inf_nan=False)], ...] = Field(
        (1.0, 5.0), min_length=2, max_length=2
    )
    comment: str | None = Field(None, max_length=COMMENT_MAX)
    agent: str | None = Field(None, max_length=NAME_MAX)

    def record(self) -> Outcome:
        raw: dict[str, Any] = self.model_dump(mode="json")
        occurred: datetime = self.occurred_at
        return Outcome(
            provider_event_id=self.provider_event_id,
            kind=self.kind,
            occurred_at=occurred,
            correlation_token=self.correlation_token,
            provider_ref=self.provider_ref,
            contact=Contact(**self.contact.model_dump()) if self.contact else None,
            reached=self.reached,
            confirmed=self.confirmed,
            score=self.score,
            scale=(self.scale[0], self.scale[1]),
            comment=self.comment,
            agent=self.agent,
            raw=raw,
        )


class OutcomesIn(BaseModel):
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=500)


def _post(rt: Runtime, channel: str, body: OutcomesIn, principal: Principal) -> Accepted:
    _check_channel(rt, channel, principal)
    outcomes = [o.record() for o in body.outcomes]
    _check_storable(channel, outcomes)  # NUL characters: InputError, a 400 problem detail
    return _store(rt, channel, outcomes)


@router.post(
    "/channels/{channel}/outcomes",
    response_model=Accepted,
    responses=problems(400, 401, 403, 404, 422),
)
def post_outcomes(
    channel: Channel,
    body: OutcomesIn,
    rt: RuntimeDep,
    principal: Annotated[Principal, Depends(require(Permission.POST_OUTCOMES))],
) -> Accepted:
    """Report answers for a channel (call-centre systems without webhooks); idempotent."""
    return _post(rt, channel, body, principal)
