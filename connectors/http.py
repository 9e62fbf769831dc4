"""One HTTP client for every connector that talks to a remote API.

:class:`HttpService` wraps ``httpx.Client`` with what every integration
needs and none should re-implement:

* errors mapped to the project's: 429, 408, 5xx and connection failures
  become :class:`RetriableError` (``Retry-After`` read in seconds or as an
  HTTP date); other 4xx become :class:`FatalError` carrying the server's
  own message; a TLS failure is a :class:`FatalError` that says so;
* in-call retries with :mod:`core.retry` (the connector's injected
  ``sleep``), so one bad page does not restart a whole pull;
* one request budget per host (:class:`HostBudget`), shared by every
  client and thread of the process that talks to that host;
* secrets never in messages: errors name the method, the path and the
  status, never headers or query strings with tokens.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from core.errors import FatalError, RetriableError
from core.retry import DEFAULT_ATTEMPTS, call_with_retry, make_retrying


def http_options_schema(default_rate: float = 0) -> dict[str, Any]:
    """JSON Schema properties every HTTP connector accepts: rate budget, timeout, TLS."""
    return {
        "rate": {
            "type": "number",
            "minimum": 0,
            "default": default_rate,
            "description": "requests per second to the host, shared by every client (0: no limit)",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 30,
            "description": "seconds to wait for each HTTP call",
        },
        "verify_tls": {
            "type": ["boolean", "string"],
            "default": True,
            "description": "verify the server's certificate (or a CA bundle path)",
        },
    }


RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MessageOf = Callable[[httpx.Response], str | None]
"""Extracts the server's own error message from a failed response (None: none found)."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class HostBudget:
    """At most ``rate`` requests per second to one host, shared by all threads.

    Budgets are kept per host in a process-wide table (:meth:`for_host`), so
    concurrent backfill windows and several connectors pointing at the same
    server share one allowance. ``rate`` of 0 or less means no limit.
    """

    _table: ClassVar[dict[str, HostBudget]] = {}
    _table_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_host(cls, host: str, rate: float) -> HostBudget:
        with cls._table_lock:
            budget = cls._table.get(host)
            if budget is None:
                budget = cls._table[host] = HostBudget(rate)
            elif rate > 0 and (budget.rate <= 0 or rate < budget.rate):
                budget.rate = rate  # the strictest configured budget wins
            return budget

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + 1.0 / self.rate
        if slot > now:
            sleep(slot - now)


class _NotRetried(Exception):
    """Carries a retriable error out of the retry loop untouched (non-idempotent request)."""

    def __init__(self, error: RetriableError) -> None:
        super().__init__(str(error))
        self.error = error


def _tls(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a bool, or a context trusting the CA bundle at a path."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _default_message(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or None
    if isinstance(data, dict):
        for key in ("errorMessages", "message", "error", "detail", "errors"):
            value = data.get(key)
            if value:
                return value if isinstance(value, str) else str(value)[:300]
    if isinstance(data, list) and data:
        return " ".join(str(x) for x in data)[:300]
    return None


class HttpService:
    """A connector's HTTP client: base URL, auth, errors, retries and host budget.

    Args:
        name: The connector's configured name (used in error messages).
        base_url: Root of the remote API.
        headers: Default headers (auth included; never shown in errors).
        auth: An ``httpx`` auth (Basic…), if not in ``headers``.
        timeout: Seconds per request.
        verify: TLS verification (``False`` or a CA bundle path).
        rate: Requests per second to this host (0: unlimited).
        attempts: Tries per request before the error goes up.
        sleep: How retries wait (tests pass a fake).
        message_of: Extracts the server's error message from a response.
        transport: An ``httpx`` transport (tests).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool | str = True,
        rate: float = 0.0,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        message_of: MessageOf = _default_message,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.sleep = sleep
        self.attempts = attempts
        self.message_of = message_of
        self.budget = HostBudget.for_host(self.host, rate)
        if transport is None:
            # small requests must not wait for the peer's delayed ACK (Nagle: ~40 ms each)
            transport = httpx.HTTPTransport(
                verify=_tls(verify), socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def _where(self, method: str, path: str) -> str:
        return f"{self.name}: {method} {urlsplit(path).path or path}"

    def send_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; raises the project's errors for failures, returns 2xx/3xx as they are."""
        self.budget.acquire(self.sleep)
        where = self._where(method, path)
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            text = str(exc)
            if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
                msg = f"{where}: TLS error talking to {self.host}: {text}"
                raise FatalError(msg, connector=self.name) from None
            msg = f"{where}: cannot connect to {self.host}: {text or type(exc).__name__}"
            raise RetriableError(msg, connector=self.name, unsent=True) from None
        except httpx.TimeoutException as exc:
            msg = f"{where}: timed out ({type(exc).__name__})"
            raise RetriableError(msg, connector=self.name) from None
        except httpx.TransportError as exc:
            msg = f"{where}: transport error: {exc or type(exc).__name__}"
            raise RetriableError(msg, connector=self.name) from None
        if response.status_code < 400:
            return response
        server = self.message_of(response)
        detail = f"HTTP {response.status_code}" + (f": {server}" if server else "")
        msg = f"{where}: {detail}"
        if response.status_code in RETRIABLE_STATUS:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            raise RetriableError(
                msg, retry_after=wait, connector=self.name, status=response.status_code
            )
        raise FatalError(msg, connector=self.name, status=response.status_code)

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A request retried on :class:`RetriableError` (``Retry-After`` honoured).

        Only idempotent requests are retried whatever the failure (by
        default GET, PUT, DELETE…; pass ``idempotent=True`` for a POST that
        only reads, such as a search or a JSON-RPC read). A POST or
        PATCH is retried only when the server cannot have acted on it (429,
        or no connection); after a 5xx or a timeout the error goes up, and
        the connector must look for the result (search by dedup key) before
        trying again — a blind retry could create a second ticket.
        """
        retrying = make_retrying(attempts=self.attempts, sleep=self.sleep)
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        if idempotent:
            return call_with_retry(lambda: self.send_once(method, path, **kwargs), retrying)

        def once_unless_refused() -> httpx.Response:
            try:
                return self.send_once(method, path, **kwargs)
            except RetriableError as exc:
                if getattr(exc, "status", None) == 429 or getattr(exc, "unsent", False):
                    raise
                raise _NotRetried(exc) from exc

        try:
            return call_with_retry(once_unless_refused, retrying)
        except _NotRetried as wrapped:
            raise wrapped.error from None

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.json_of(self.request("GET", path, **kwargs), "GET", path)

    def post_json(self, path: str, body: Any, *, idempotent: bool = False, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, idempotent=idempotent, **kwargs)
        return self.json_of(response, "POST", path)

    def json_of(self, response: httpx.Response, method: str, path: str) -> Any:
        """The response's JSON, or a :class:`RetriableError` naming where it was not JSON."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            msg = f"{self._where(method, path)}: the reply is not JSON ({response.text[:120]!r})"
            raise RetriableError(msg, connector=self.name) from None
