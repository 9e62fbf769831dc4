"""A GLPI API session over :class:`connectors.http.HttpService`.

``initSession`` with ``Authorization: user_token …`` (or Basic) plus the
``App-Token`` header returns a ``session_token``, sent as ``Session-Token``
on every later call. PHP sessions expire when idle: a call answered
``401 ["ERROR_SESSION_TOKEN_INVALID", …]`` re-opens the session once and is
retried; a second refusal goes up. ``close()`` calls ``killSession``.

GLPI's errors are ``["ERROR_CODE", "message"]`` arrays; they surface in the
project's errors as ``ERROR_CODE: message`` (HttpService maps 429/5xx to
:class:`RetriableError` honouring ``Retry-After``, other 4xx to
:class:`FatalError`). The tokens never appear in messages.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import httpx

from connectors.glpi.options import GlpiOptions
from connectors.http import HttpService
from core.errors import ConnectorError, FatalError

_CODE = re.compile(r"\b(ERROR_[A-Z_]+)\b")
SESSION_INVALID = "ERROR_SESSION_TOKEN_INVALID"

HINTS = {
    "ERROR_APP_TOKEN_PARAMETERS_MISSING": "the API client needs an App-Token: set app_token",
    "ERROR_WRONG_APP_TOKEN_PARAMETER": "app_token is wrong (Setup > General > API clients)",
    "ERROR_GLPI_LOGIN_USER_TOKEN": "user_token is refused (the user's API token)",
    "ERROR_GLPI_LOGIN": "username/password are refused",
    "ERROR_LOGIN_PARAMETERS_MISSING": "give user_token, or username and password",
    "ERROR_NOT_ALLOWED_IP": "this machine's IP is not allowed by the API client",
    "ERROR_RIGHT_MISSING": "the API user's profile lacks a right",
    "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED": "Basic login is disabled: use user_token",
}

log = logging.getLogger("qloop.glpi")


def glpi_message(response: httpx.Response) -> str | None:
    """GLPI's own error text, ``ERROR_CODE: message``, from a failed response."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or None
    if isinstance(data, list) and data:
        code, rest = str(data[0]), " ".join(str(x) for x in data[1:])
        return f"{code}: {rest}"[:300] if rest else code
    if isinstance(data, dict):  # the High-Level API's shape, in case of a misdirected URL
        parts = [str(data[k]) for k in ("status", "title", "detail", "message") if data.get(k)]
        return ": ".join(parts)[:300] or None
    return None


def error_code(exc: BaseException) -> str | None:
    """The ``ERROR_…`` code a connector error carries, if any."""
    match = _CODE.search(str(exc))
    return match.group(1) if match else None


def with_hint(exc: ConnectorError) -> str:
    """The error's message, followed by what to fix when GLPI's code says so."""
    hint = HINTS.get(error_code(exc) or "")
    return f"{exc} ({hint})" if hint else str(exc)


class GlpiSession:
    """An open (or lazily opened) session on one GLPI server; thread-safe.

    Args:
        name: The source's name (in messages).
        opts: The resolved options.
        sleep: How retries wait (the connector context's).
        transport: An ``httpx`` transport (tests).
        redis_url: The deployment's Redis (the host budget shared by every process).
    """

    def __init__(
        self,
        name: str,
        opts: GlpiOptions,
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None = None,
        redis_url: str | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if opts.app_token:
            headers["App-Token"] = opts.app_token
        self.name = name
        self.opts = opts
        self.http = HttpService(
            name,
            opts.base_url,
            headers=headers,
            timeout=opts.timeout,
            verify=opts.verify_tls,
            rate=opts.rate,
            sleep=sleep,
            message_of=glpi_message,
            transport=transport,
            redis_url=redis_url,
        )
        self._token: str | None = None
        self._lock = threading.Lock()
        self.reopened = 0

    # -- session ---------------------------------------------------------------

    def _login_header(self) -> str:
        if self.opts.user_token:
            return f"user_token {self.opts.user_token}"
        pair = f"{self.opts.username}:{self.opts.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _open(self) -> str:
        response = self.http.request(
            "GET", "/initSession", headers={"Authorization": self._login_header()}
        )
        data = self.http.json_of(response, "GET", "/initSession")
        token = data.get("session_token") if isinstance(data, dict) else None
        if not token:
            msg = f"{self.name}: GET /initSession returned no session_token (is this GLPI?)"
            raise FatalError(msg, connector=self.name)
        self._token = str(token)
        if self.opts.entity is not None:
            self.http.request(
                "POST",
                "/changeActiveEntities",
                headers={"Session-Token": self._token},
                json={"entities_id": self.opts.entity, "is_recursive": True},
            )
        return self._token

    def token(self) -> str:
        """The current session token, opening the session when there is none."""
        with self._lock:
            return self._token or self._open()

    def _reopen(self, stale: str) -> str:
        with self._lock:
            if self._token == stale or self._token is None:  # else another thread already did
                self._token = None
                self.reopened += 1
                return self._open()
            return self._token

    def close(self) -> None:
        """Kill the session (best effort) and close the HTTP client."""
        with self._lock:
            token, self._token = self._token, None
        try:
            if token:
                self.http.send_once("GET", "/killSession", headers={"Session-Token": token})
        except ConnectorError as exc:  # the session expires on its own; closing must not fail
            log.info("%s: killSession failed (%s); it will expire", self.http.name, exc)
        finally:
            self.http.close()

    # -- calls -----------------------------------------------------------------

    def request(
        self, method: str, path: str, *, once: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """A call with the session token; an expired session is re-opened once.

        ``once``: no in-call retry on retriable failures (for writes that are
        not idempotent: the caller checks what happened before trying again).
        """
        send = self.http.send_once if once else self.http.request
        token = self.token()
        try:
            return send(method, path, headers={"Session-Token": token}, **kwargs)
        except FatalError as exc:
            if exc.status != 401 or error_code(exc) != SESSION_INVALID:
                raise
        token = self._reopen(token)
        return send(method, path, headers={"Session-Token": token}, **kwargs)

    def get(self, path: str, params: Any = None) -> Any:
        """GET ``path`` and return its JSON."""
        return self.http.json_of(self.request("GET", path, params=params), "GET", path)

    def post(self, path: str, body: Any, *, once: bool = False) -> Any:
        """POST a JSON body to ``path`` and return the reply's JSON."""
        response = self.request("POST", path, once=once, json=body)
        return self.http.json_of(response, "POST", path)
