"""A GLPI API session: the kit's session scheme over :class:`connectors.http.HttpService`.

:class:`connectors.kit.auth.SessionAuth` signs every call: ``initSession``
with ``Authorization: user_token …`` (or Basic) plus the ``App-Token``
header returns a ``session_token``, sent as ``Session-Token`` on every later
call, and ``changeActiveEntities`` follows each login when ``entity`` is
set. PHP sessions expire when idle: a call answered
``401 ["ERROR_SESSION_TOKEN_INVALID", …]`` re-opens the session once and is
retried; a second refusal goes up. ``close()`` calls ``killSession``.

GLPI's errors are ``["ERROR_CODE", "message"]`` arrays; they surface in the
project's errors as ``ERROR_CODE: message`` (HttpService maps 429/5xx to
:class:`RetriableError` honouring ``Retry-After``, other 4xx to
:class:`FatalError`; a refused login is mapped the same way). The tokens
never appear in messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from connectors.glpi.options import GlpiOptions
from connectors.http import RETRIABLE_STATUS, HttpService, parse_retry_after
from connectors.kit.auth import SessionAuth, basic_header
from core.errors import ConnectorError, FatalError, RetriableError

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


def expired(response: httpx.Response) -> bool:
    """Whether GLPI says the session is gone (``401 ERROR_SESSION_TOKEN_INVALID``)."""
    return response.status_code == 401 and SESSION_INVALID in response.text


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
        self.name = name
        self.opts = opts
        base = opts.base_url.rstrip("/")
        if opts.user_token:
            credentials = f"user_token {opts.user_token}"
        else:
            credentials = basic_header(opts.username or "", opts.password or "")
        self.auth = SessionAuth(
            httpx.Request("GET", f"{base}/initSession", headers={"Authorization": credentials}),
            "Session-Token",
            logout=httpx.Request("GET", f"{base}/killSession"),
            extra={"App-Token": opts.app_token} if opts.app_token else None,
            expired=expired,
            refused=self._refused,
            after_login=self._after_login if opts.entity is not None else None,
        )
        self.http = HttpService(
            name,
            opts.base_url,
            headers=headers,
            auth=self.auth,
            timeout=opts.timeout,
            verify=opts.verify_tls,
            rate=opts.rate,
            sleep=sleep,
            message_of=glpi_message,
            transport=transport,
            redis_url=redis_url,
        )

    def _refused(self, where: str, response: httpx.Response) -> ConnectorError:
        """A refused login as the other calls' errors: GLPI's code, 429/5xx retriable."""
        server = glpi_message(response)
        detail = f"HTTP {response.status_code}" + (f": {server}" if server else "")
        msg = f"{self.name}: {where.replace(' (session login)', '')}: {detail}"
        if response.status_code in RETRIABLE_STATUS:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            return RetriableError(
                msg, retry_after=wait, connector=self.name, status=response.status_code
            )
        return FatalError(msg, connector=self.name, status=response.status_code)

    def _after_login(self, token: str) -> list[httpx.Request]:
        url = f"{self.opts.base_url.rstrip('/')}/changeActiveEntities"
        body = {"entities_id": self.opts.entity, "is_recursive": True}
        return [httpx.Request("POST", url, json=body)]

    @property
    def reopened(self) -> int:
        """Sessions opened after the first one (expired ones re-opened)."""
        return max(self.auth.logins - 1, 0)

    def token(self) -> str:
        """The current session token, opening the session when there is none."""
        try:
            return self.auth.login(self.http.client)
        except httpx.ConnectError as exc:  # as HttpService words it (TLS, no connection)
            text = str(exc)
            where = f"{self.name}: GET /initSession"
            if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
                msg = f"{where}: TLS error talking to {self.http.host}: {text}"
                raise FatalError(msg, connector=self.name) from None
            msg = f"{where}: cannot connect to {self.http.host}: {text or type(exc).__name__}"
            raise RetriableError(msg, connector=self.name, unsent=True) from None
        except httpx.HTTPError as exc:
            msg = f"{self.name}: GET /initSession: transport error: {exc or type(exc).__name__}"
            raise RetriableError(msg, connector=self.name) from None

    def close(self) -> None:
        """Kill the session (best effort) and close the HTTP client."""
        try:
            self.auth.logout(self.http.client)
        finally:
            self.http.close()

    # -- calls -----------------------------------------------------------------

    def request(
        self, method: str, path: str, *, once: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """A call with the session token (an expired session is re-opened once).

        ``once``: no in-call retry on retriable failures (for writes that are
        not idempotent: the caller checks what happened before trying again).
        """
        send = self.http.send_once if once else self.http.request
        return send(method, path, **kwargs)

    def get(self, path: str, params: Any = None) -> Any:
        """GET ``path`` and return its JSON."""
        return self.http.json_of(self.request("GET", path, params=params), "GET", path)

    def post(self, path: str, body: Any, *, once: bool = False) -> Any:
        """POST a JSON body to ``path`` and return the reply's JSON."""
        response = self.request("POST", path, once=once, json=body)
        return self.http.json_of(response, "POST", path)
