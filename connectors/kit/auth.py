"""Auth schemes as ``httpx.Auth`` flows: basic, bearer, API key, OAuth2, session login.

Each scheme signs every request of a client; those that need a token get
it inside the flow (one request to the token or login endpoint, through the
same client) and renew it once on a 401, never in a loop. Secrets never
appear in error messages.

* :class:`BasicAuth`, :class:`BearerAuth`, :class:`ApiKeyAuth` (header or query);
* :class:`OAuth2Auth`: client credentials or password grant at a token URL,
  the token renewed before it expires (with the refresh token when the
  server gave one, else the grant again) and on a 401;
* :class:`SessionAuth`: a login call that returns a session token sent in a
  header on every request, re-done once when the session expired
  (GLPI's ``initSession``/``killSession``); :meth:`SessionAuth.logout` ends it.

:func:`build_auth` makes one from its YAML description (``scheme: …``).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import httpx

from connectors.kit.paths import read
from core.errors import ConfigError, FatalError

Flow = Generator[httpx.Request, httpx.Response, None]


def basic_header(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class BasicAuth(httpx.Auth):
    def __init__(self, username: str, password: str) -> None:
        self._header = basic_header(username, password)

    def auth_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._header
        yield request


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Flow:
        request.headers["Authorization"] = self._header
        yield request


class ApiKeyAuth(httpx.Auth):
    """A key in a header (``X-API-Key: …``, ``Token token=…``) or in a query parameter."""

    def __init__(self, key: str, *, header: str | None = None, query: str | None = None,
                 prefix: str = "") -> None:  # fmt: skip
        if (header is None) == (query is None):
            msg = "api_key auth: give exactly one of header and query"
            raise ConfigError(msg)
        self.key, self.header, self.query, self.prefix = key, header, query, prefix

    def auth_flow(self, request: httpx.Request) -> Flow:
        if self.header:
            request.headers[self.header] = f"{self.prefix}{self.key}"
        else:
            assert self.query is not None
            request.url = request.url.copy_merge_params({self.query: self.key})
        yield request


def _refused(where: str, response: httpx.Response) -> FatalError:
    response.read()
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("error_description") or body.get("error") or "")[:200]
    except ValueError:
        detail = ""
    msg = f"{where}: refused (HTTP {response.status_code})" + (f": {detail}" if detail else "")
    return FatalError(msg, status=response.status_code)


class OAuth2Auth(httpx.Auth):
    """OAuth 2.0 tokens from ``token_url``: ``client_credentials`` or ``password`` grant.

    The token is renewed ``leeway`` seconds before ``expires_in`` runs out:
    with ``grant_type=refresh_token`` when the server gave a refresh token
    (falling back to the grant when that is refused), else the grant again.
    A 401 on a signed request renews once and retries it once.
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        grant: str = "client_credentials",
        username: str | None = None,
        password: str | None = None,
        scope: str | None = None,
        leeway: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if grant not in ("client_credentials", "password"):
            msg = f"oauth2 auth: grant must be client_credentials or password, not {grant!r}"
            raise ConfigError(msg)
        if grant == "password" and not (username and password):
            msg = "oauth2 auth: the password grant needs username and password"
            raise ConfigError(msg)
        self.token_url, self.grant, self.scope = token_url, grant, scope
        self._client = (client_id, client_secret)
        self._user = (username or "", password or "")
        self.leeway, self.clock = leeway, clock
        self.access: str | None = None
        self.refresh: str | None = None
        self.expires_at = 0.0
        self.grants = 0
        self._lock = threading.Lock()

    def _form(self, use_refresh: bool) -> dict[str, str]:
        form = {"client_id": self._client[0], "client_secret": self._client[1]}
        if use_refresh and self.refresh:
            form.update(grant_type="refresh_token", refresh_token=self.refresh)
        elif self.grant == "password":
            form.update(grant_type="password", username=self._user[0], password=self._user[1])
        else:
            form["grant_type"] = "client_credentials"
        if self.scope and "refresh_token" not in form:
            form["scope"] = self.scope
        return form

    def _token_request(self, use_refresh: bool) -> httpx.Request:
        return httpx.Request(
            "POST", self.token_url, data=self._form(use_refresh),
            headers={"Accept": "application/json"},
        )  # fmt: skip

    def _take(self, response: httpx.Response) -> None:
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            msg = f"POST {httpx.URL(self.token_url).path}: no access_token in the answer"
            raise FatalError(msg, status=response.status_code)
        self.access = str(token)
        self.refresh = str(body.get("refresh_token") or "") or self.refresh
        expires = body.get("expires_in")
        self.expires_at = self.clock() + (float(expires) if expires else 3600.0)
        self.grants += 1

    def _renew(self) -> Flow:
        where = f"POST {httpx.URL(self.token_url).path}"
        if self.refresh:
            response = yield self._token_request(True)
            if response.status_code < 400:
                self._take(response)
                return
            self.refresh = None  # refused (expired, revoked): the grant again
        response = yield self._token_request(False)
        if response.status_code >= 400:
            raise _refused(where + " (OAuth token)", response)
        self._take(response)

    def auth_flow(self, request: httpx.Request) -> Flow:
        with self._lock:
            stale = self.access is None or self.clock() >= self.expires_at - self.leeway
        if stale:
            yield from self._renew()
        request.headers["Authorization"] = f"Bearer {self.access}"
        response = yield request
        if response.status_code == 401:
            self.access = None
            yield from self._renew()
            request.headers["Authorization"] = f"Bearer {self.access}"
            yield request


class SessionAuth(httpx.Auth):
    """A login call that returns a session token, sent in ``header`` on every request.

    Args:
        login: The login request (URL and credentials headers); its JSON
            answer holds the token at ``token_path``.
        header: The header that carries the session (``Session-Token``).
        logout: The logout request, sent with the session header by :meth:`logout`.
        extra: Headers sent on every request (GLPI's ``App-Token``).
        expired: Whether an answer means the session expired (default: 401);
            the login is then done once more and the request retried once.
        refused: The error a refused login (or after-login call) raises, from
            where it was and the answer (default: a :class:`FatalError` with
            the OAuth-style ``error`` text); a tool passes its own to keep its
            error codes and to make 429/5xx retriable.
        after_login: Calls made with the new session right after each login
            (GLPI's ``changeActiveEntities``), from the new token.

    Safe to share between threads: one login at a time, and a thread that
    finds the session already renewed by another uses it.
    """

    requires_response_body = True

    def __init__(
        self,
        login: httpx.Request,
        header: str,
        *,
        token_path: str = "session_token",
        logout: httpx.Request | None = None,
        extra: Mapping[str, str] | None = None,
        expired: Callable[[httpx.Response], bool] = lambda r: r.status_code == 401,
        refused: Callable[[str, httpx.Response], Exception] | None = None,
        after_login: Callable[[str], Sequence[httpx.Request]] | None = None,
    ) -> None:
        self.login_request, self.header, self.token_path = login, header, token_path
        self.logout_request, self.extra, self.expired = logout, dict(extra or {}), expired
        self.refused = refused or _refused
        self.after_login = after_login
        self.token: str | None = None
        self.logins = 0
        self._lock = threading.RLock()

    def _check(self, where: str, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            raise self.refused(where, response)

    def _login(self) -> Flow:
        request = self.login_request
        for name, value in self.extra.items():
            request.headers[name] = value
        response = yield request
        where = f"{request.method} {request.url.path} (session login)"
        self._check(where, response)
        token = read(response.json(), self.token_path)
        if not token:
            msg = f"{where}: no session token at {self.token_path!r} in the answer"
            raise FatalError(msg, status=response.status_code)
        for call in self.after_login(str(token)) if self.after_login else ():
            for name, value in {**self.extra, self.header: str(token)}.items():
                call.headers[name] = value
            answer = yield call
            self._check(f"{call.method} {call.url.path} (after the session login)", answer)
        self.token = str(token)
        self.logins += 1

    def _sign(self, request: httpx.Request) -> None:
        for name, value in self.extra.items():
            request.headers[name] = value
        request.headers[self.header] = self.token or ""

    def _renew(self, stale: str | None) -> Flow:
        """Log in unless another thread already replaced ``stale`` (one login at a time)."""
        with self._lock:
            if self.token is None or self.token == stale:
                self.token = None
                yield from self._login()

    def auth_flow(self, request: httpx.Request) -> Flow:
        if self.token is None:
            yield from self._renew(None)
        self._sign(request)
        sent = self.token
        response = yield request
        if self.expired(response):
            yield from self._renew(sent)
            self._sign(request)
            yield request

    def login(self, client: httpx.Client) -> str:
        """Open the session now (when none is open) through ``client``; the token."""
        flow = self._renew(None)
        try:
            request = next(flow)
            while True:
                response = client.send(request, auth=_unsigned)
                response.read()
                request = flow.send(response)
        except StopIteration:
            pass
        finally:  # a failed call ends the login here, in this thread: its lock is released
            flow.close()  # now, not when the collector finds the flow (maybe on another thread)
        return self.token or ""

    def logout(self, client: httpx.Client) -> None:
        """End the session (when one is open); a failure to end it is not an error."""
        if self.token is None or self.logout_request is None:
            return
        request = self.logout_request
        headers = {**self.extra, self.header: self.token}
        self.token = None
        try:
            client.request(request.method, request.url, headers=headers, auth=_unsigned)
        except httpx.HTTPError:
            return


def _unsigned(request: httpx.Request) -> httpx.Request:
    return request


def _url(base_url: str, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def build_auth(spec: Mapping[str, Any], base_url: str, where: str) -> httpx.Auth:
    """An auth scheme from its YAML description (see the ``rest`` source's schema)."""
    scheme = spec.get("scheme")
    if scheme == "basic":
        return BasicAuth(str(spec["username"]), str(spec["password"]))
    if scheme == "bearer":
        return BearerAuth(str(spec["token"]))
    if scheme == "api_key":
        prefix = str(spec.get("prefix") or "")
        return ApiKeyAuth(
            str(spec["key"]), header=spec.get("header"), query=spec.get("query"), prefix=prefix
        )
    if scheme == "oauth2":
        return OAuth2Auth(
            _url(base_url, str(spec["token_url"])),
            str(spec["client_id"]),
            str(spec["client_secret"]),
            grant=str(spec.get("grant") or "client_credentials"),
            username=spec.get("username"),
            password=spec.get("password"),
            scope=spec.get("scope"),
        )
    if scheme == "session":
        login = httpx.Request(
            str(spec.get("login_method") or "POST"),
            _url(base_url, str(spec["login_path"])),
            headers=dict(spec.get("login_headers") or {}),
            json=spec.get("login_body"),
        )
        logout = None
        if spec.get("logout_path"):
            method = str(spec.get("logout_method") or "GET")
            logout = httpx.Request(method, _url(base_url, str(spec["logout_path"])))
        return SessionAuth(
            login,
            str(spec["header"]),
            token_path=str(spec.get("token_path") or "session_token"),
            logout=logout,
            extra=spec.get("headers"),
        )
    msg = (
        f"{where}.auth.scheme: unknown scheme {scheme!r} (basic, bearer, api_key, oauth2, session)"
    )
    raise ConfigError(msg)
