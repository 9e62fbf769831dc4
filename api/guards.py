"""Requests refused before any route runs: NUL characters and oversized bodies.

PostgreSQL cannot hold the NUL character in text, so a query parameter or
path holding one (``?source=%00``) would fail deep in a query as a 500. It
is refused here, for every route at once, with a 400 problem detail; a
declared body larger than :data:`MAX_REQUEST_BODY` gets 413.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem_response

MAX_REQUEST_BODY = 4_000_000
"""Largest request body accepted by any route, in bytes (webhooks take less)."""


def _nul_at(scope: Scope) -> str | None:
    """Which part of the request holds a NUL character, if one does."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "\x00" in unquote_plus(query):
        return "query string"
    return None


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class RequestGuard:
    """ASGI middleware: 400 for a NUL in the path or query, 413 for an oversized body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_at(scope)
            if where is not None:
                detail = f"the request's {where} contains the NUL character (%00); it is refused"
                await problem_response(400, detail, slug="nul-character")(scope, receive, send)
                return
            size = _declared_length(scope)
            if size is not None and size > MAX_REQUEST_BODY:
                detail = f"request body larger than {MAX_REQUEST_BODY} bytes"
                await problem_response(413, detail, slug="too-large")(scope, receive, send)
                return
        await self.app(scope, receive, send)
