"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers has the same shape: ``type`` (a URI naming the
kind of problem), ``title``, ``status``, ``detail`` and, for validation
errors, ``errors`` (each with the field's ``path`` and a ``message``).
:func:`install` maps qloop's own errors (:mod:`core.errors`) and FastAPI's
validation and HTTP errors to that shape in one place, so routes simply raise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import (
    ConfigError,
    ConnectorError,
    InputError,
    NotFoundError,
    QloopError,
    SignatureError,
    StateError,
)

log = logging.getLogger("qloop.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://qloop.invalid/problems/"
"""Problem types are ``TYPE_BASE`` + a slug (``not-found``, ``validation``…)."""

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Validation failed",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    422: "validation",
    500: "internal",
    502: "upstream",
    503: "unavailable",
}


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    path: str = Field(description="Where the field is: body.incident_id, query.limit…")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class ApiError(Exception):
    """An HTTP error raised by a route; rendered as a problem detail.

    Args:
        status: The HTTP status.
        detail: What went wrong, for a person (names the resource or field).
        slug: The problem type's slug (default from the status).
        headers: Extra response headers (``WWW-Authenticate``…).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = headers


def problem_response(
    status: int,
    detail: str | None,
    *,
    slug: str | None = None,
    errors: Sequence[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or _SLUGS.get(status, f"http-{status}")),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [e.model_dump() for e in errors]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldProblem(path=_field_path(err.get("loc", ())), message=str(err.get("msg", "")))
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e.path}: {e.message}" for e in errors) or "invalid request"
    return problem_response(422, detail, errors=errors)


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status, exc.detail, slug=exc.slug, headers=exc.headers)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, str(exc.detail), headers=headers)


def _qloop(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QloopError)
    if isinstance(exc, SignatureError):
        return problem_response(401, exc.message, slug="signature")
    if isinstance(exc, InputError):
        errors = [FieldProblem(path=exc.field, message=exc.message)] if exc.field else None
        return problem_response(400, exc.message, slug="bad-input", errors=errors)
    if isinstance(exc, NotFoundError):
        return problem_response(404, exc.message, slug="not-found")
    if isinstance(exc, StateError):
        return problem_response(409, exc.message, slug="state")
    if isinstance(exc, ConnectorError):
        return problem_response(502, exc.message, slug="connector")
    if isinstance(exc, ConfigError):
        log.error("configuration error while serving a request: %s", exc)
        return problem_response(500, "the server's configuration is invalid", slug="config")
    return problem_response(500, exc.message)


class CatchUnexpected:
    """Answer an unexpected exception with a 500 problem and log it once, here.

    Starlette's outermost middleware re-raises an exception after its handler
    answered, so the server (uvicorn) logged the same traceback a second time,
    through a handler of its own. This middleware sits inside it and keeps
    the exception: one log line (through qloop's masking filter), one answer.
    An exception after the answer has started cannot be answered and goes on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            log.exception(
                "unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc
            )
            response = problem_response(500, "unexpected error; see the server log")
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Render every error of ``app`` as a problem detail."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(QloopError, _qloop)
    app.add_middleware(CatchUnexpected)


def problem_schema_ref() -> dict[str, Any]:
    """The OpenAPI content of a problem response (refers to ``#/components/schemas/Problem``)."""
    return {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
