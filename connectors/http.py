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
  client and thread of the process that talks to that host, and by every
  process through Redis when the deployment sets ``redis_url``: a rate,
  and a pause that a 429 (or a 503 with ``Retry-After``) imposes on every
  caller of that host until its ``Retry-After`` has passed;
* secrets never in messages: errors name the method, the path and the
  status, never headers or query strings with tokens.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import orjson

from core.errors import FatalError, RetriableError
from core.retry import DEFAULT_ATTEMPTS, DEFAULT_MAX_WAIT, call_with_retry, make_retrying

log = logging.getLogger("qloop.http")


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
PAUSING_STATUS = frozenset({429, 503})
"""With ``Retry-After``, these pause every caller of the host, not only the one answered."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MessageOf = Callable[[httpx.Response], str | None]
"""Extracts the server's own error message from a failed response (None: none found)."""


_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
"""19 digits in a row (once every digit reads 0): maybe an integer orjson would read as a
float (beyond 64 bits). Translating and searching cost a tenth of the parse."""


def json_loads(content: bytes) -> Any:
    """A JSON body parsed as ``json.loads`` parses it, by orjson when it can.

    orjson reads a page of a hundred issues with their changelogs in about
    half the time. What it refuses and the ``json`` module accepts (``NaN``,
    overflowing floats, UTF-16 or UTF-32 text) is parsed by ``json``, and so
    is a body holding a run of 19 digits or more (orjson would read an
    integer beyond 64 bits as a float): the result is the same either way.

    Raises:
        ValueError: the body is not JSON (``json.JSONDecodeError``).
    """
    if _LONG_RUN not in content.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


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


MAX_RESUME_JITTER = 1.0
"""Callers held by a host's pause return spread over up to this many seconds after it."""


class HostPaused(RetriableError):
    """A host asked every caller to wait longer than an in-call retry may wait."""


class HostBudget:
    """One request budget per host: the rate, and the pause a 429 imposes on every caller.

    ``rate`` requests per second at most (0 or less: no limit), and when
    the host answers 429 (or 503) with ``Retry-After``, *no* caller sends
    to it before that instant has passed: the other threads would
    otherwise keep calling, and a burst limiter such as Jira's extends the
    block at every early call. Budgets are kept per host in a process-wide
    table (:meth:`for_host`), so concurrent backfill windows, fetch workers
    and several connectors pointing at the same server share one; with a
    Redis URL (:class:`RedisHostBudget`) every process shares it too.
    """

    _table: ClassVar[dict[tuple[str, str | None], HostBudget]] = {}
    _table_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, rate: float, host: str = "") -> None:
        self.rate = rate
        self.host = host
        self._next = 0.0
        self._resume = 0.0
        self._lock = threading.Lock()
        self._thread = threading.local()

    @classmethod
    def for_host(cls, host: str, rate: float, redis_url: str | None = None) -> HostBudget:
        """The budget of ``host`` (shared through Redis when ``redis_url`` is set)."""
        with cls._table_lock:
            budget = cls._table.get((host, redis_url))
            if budget is None:
                budget = RedisHostBudget(rate, host, redis_url) if redis_url else cls(rate, host)
                cls._table[(host, redis_url)] = budget
            elif rate > 0 and (budget.rate <= 0 or rate < budget.rate):
                budget.rate = rate  # the strictest configured budget wins
            return budget

    @classmethod
    def _after_fork(cls) -> None:
        """In a forked child: fresh locks (a parent's thread may have held one at the fork)."""
        cls._table_lock = threading.Lock()
        for budget in cls._table.values():
            budget._lock = threading.Lock()

    @classmethod
    def forget(cls) -> None:
        """Drop every budget of this process (tests: start as a fresh process would)."""
        with cls._table_lock:
            cls._table.clear()

    def pause(self, seconds: float) -> float:
        """No caller sends before ``seconds`` from now (a pause is only ever extended).

        Returns the instant the host may be called again, in this budget's
        own clock: the caller passes it as ``honoured`` to :meth:`acquire`
        after waiting for it itself.
        """
        with self._lock:
            self._resume = max(self._resume, time.monotonic() + max(seconds, 0.0))
            return self._resume

    def paused_for(self) -> float:
        """Seconds until the host may be called again (0: not paused)."""
        with self._lock:
            return max(self._resume - time.monotonic(), 0.0)

    def _step(self, honoured: float, take_slot: bool) -> tuple[float, float, bool]:
        """(seconds to wait, resume instant, whether that wait is a rate slot)."""
        with self._lock:
            now = time.monotonic()
            if self._resume > now and self._resume > honoured:
                return self._resume - now, self._resume, False
            if not take_slot or self.rate <= 0:
                return 0.0, self._resume, True
            slot = max(self._next, now)
            self._next = slot + 1.0 / self.rate
            return slot - now, self._resume, True

    def acquire(
        self,
        sleep: Callable[[float], None] = time.sleep,
        *,
        honoured: float = 0.0,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        """Wait for the host's pause (if any) and for a slot of its rate.

        ``honoured`` is a pause the caller has already waited out (its own
        429's Retry-After, waited by the retry policy), so it does not wait
        twice; a thread remembers the pauses it waited out, for its next
        calls (they are over by its own clock). Callers held by a pause
        come back spread over a little more (up to
        :data:`MAX_RESUME_JITTER`), and look again: the first one back may
        have met a new pause. Each wait is taken once by the clock of
        ``sleep`` (a fake sleep in tests returns at once and the call goes
        on).

        Raises:
            HostPaused: the host is paused for longer than ``max_wait``
                seconds; nothing was sent (``retry_after`` says how long).
        """
        honoured = max(honoured, getattr(self._thread, "honoured", 0.0))
        self._thread.honoured = honoured
        have_slot = False
        while True:
            wait, resume, is_slot = self._step(honoured, take_slot=not have_slot)
            if not is_slot:
                if wait > max_wait:
                    msg = (
                        f"{self.host} asked to wait {wait:.0f} s (Retry-After); "
                        "not calling it before then"
                    )
                    raise HostPaused(msg, retry_after=wait, unsent=True)
                honoured = self._thread.honoured = resume
                # spread the waiters' return: all at once, one more 429 would block them all
                sleep(wait + random.uniform(0.0, min(wait, MAX_RESUME_JITTER)))
                continue
            if have_slot or wait <= 0:
                return
            have_slot = True
            sleep(wait)  # a pause may begin meanwhile: checked once more before sending


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local resume = tonumber(redis.call('GET', KEYS[1]) or '0')
if resume > now and resume > tonumber(ARGV[2]) then
  return {resume - now, resume, 0}
end
local interval = tonumber(ARGV[1])
if interval <= 0 or ARGV[3] == '0' then
  return {0, resume, 1}
end
local slot = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
redis.call('SET', KEYS[2], slot + interval, 'PX', slot + interval - now + 60000)
return {slot - now, resume, 1}
"""
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local resume = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if resume > current then
  redis.call('SET', KEYS[1], resume, 'PX', resume - now + 1000)
  return resume
end
return current
"""
_LEFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return math.max(tonumber(redis.call('GET', KEYS[1]) or '0') - now, 0)
"""


os.register_at_fork(after_in_child=HostBudget._after_fork)  # connectors.kit.child


class RedisHostBudget(HostBudget):
    """A :class:`HostBudget` kept in Redis, so every process shares it.

    Two keys per host: ``qloop:host:<host>:resume`` holds the instant (ms,
    Redis's own clock, so the processes' clocks need not agree) before
    which nobody calls the host, and ``qloop:host:<host>:next`` the next
    free slot of the rate budget (milliseconds: rates above 1,000/s count
    as 1,000/s). Each acquire is one atomic script. When Redis cannot be
    reached the process falls back to its own in-process budget (logged),
    so a Redis outage slows nothing down and calls nothing twice.
    """

    def __init__(self, rate: float, host: str, redis_url: str) -> None:
        super().__init__(rate, host)
        from redis import Redis  # only deployments with redis_url need the client

        self._redis = Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        safe = host.replace(" ", "_")
        self._keys = [f"qloop:host:{safe}:resume", f"qloop:host:{safe}:next"]
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._pause = self._redis.register_script(_PAUSE)
        self._left = self._redis.register_script(_LEFT)
        self._warned = False

    def _fallback(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "host budget for %s: Redis unavailable (%s); using this process's own budget",
                self.host,
                type(exc).__name__,
            )

    def pause(self, seconds: float) -> float:
        from redis.exceptions import RedisError

        local = super().pause(seconds)
        try:
            return float(self._pause(keys=self._keys[:1], args=[math.ceil(seconds * 1000)]))
        except RedisError as exc:
            self._fallback(exc)
            return local

    def paused_for(self) -> float:
        from redis.exceptions import RedisError

        try:
            return float(self._left(keys=self._keys[:1])) / 1000.0
        except RedisError as exc:
            self._fallback(exc)
            return super().paused_for()

    def _step(self, honoured: float, take_slot: bool) -> tuple[float, float, bool]:
        from redis.exceptions import RedisError

        interval = max(round(1000.0 / self.rate), 1) if self.rate > 0 else 0
        try:
            wait_ms, resume, granted = self._acquire(
                keys=self._keys, args=[interval, int(honoured), int(take_slot)]
            )
        except RedisError as exc:
            self._fallback(exc)
            return super()._step(honoured, take_slot)
        return float(wait_ms) / 1000.0, float(resume), bool(granted)


class _Call:
    """One request's state across its retries: the host pause it has already waited for."""

    __slots__ = ("honoured",)

    def __init__(self) -> None:
        self.honoured = 0.0


class _NotRetried(Exception):
    """Carries a retriable error out of the retry loop untouched (non-idempotent request)."""

    def __init__(self, error: RetriableError) -> None:
        super().__init__(str(error))
        self.error = error


def _unbind(response: httpx.Response) -> None:
    """Break the reference cycle between a read response and its stream.

    httpx binds a response's stream to the response (to time it when it
    closes): a cycle, so a response, its body and what is kept on it (a
    parsed page, see ``connectors.kit.paging.body_of``) would wait for the
    garbage collector's oldest generation, pages piling up between its
    runs. Once the body is read the stream has nothing left to give: it is
    replaced by the body itself, and the page is freed when its last user
    drops it.
    """
    if response.is_closed and response.is_stream_consumed:
        response.stream = httpx.ByteStream(response.content)


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
        redis_url: The deployment's Redis: the host budget is then shared by
            every process (:class:`RedisHostBudget`); None: this process only.
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
        redis_url: str | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.sleep = sleep
        self.attempts = attempts
        self.message_of = message_of
        self.budget = HostBudget.for_host(self.host, rate, redis_url)
        self._client_args: dict[str, Any] = {
            "headers": dict(headers or {}),
            "auth": auth,
            "timeout": timeout,
            "verify": verify,
            "transport": transport,
        }
        self._client = self._new_client()
        self._pid = os.getpid()
        self._fork_lock = threading.Lock()  # only a forked child ever takes it

    def _new_client(self) -> httpx.Client:
        args = self._client_args
        transport = args["transport"]
        if transport is None:
            # small requests must not wait for the peer's delayed ACK (Nagle: ~40 ms each)
            transport = httpx.HTTPTransport(
                verify=_tls(args["verify"]),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        return httpx.Client(
            base_url=self.base_url,
            headers=args["headers"],
            auth=args["auth"],
            timeout=args["timeout"],
            transport=transport,
            follow_redirects=False,
        )

    @property
    def client(self) -> httpx.Client:
        """The ``httpx`` client; in a forked child (:mod:`connectors.kit.child`) one of its own.

        A connection the parent opened (keep-alive) must not carry the
        child's requests too: both would use one socket. The inherited
        client is dropped, not closed (closing would act on the parent's
        sockets).
        """
        if self._pid != os.getpid():
            with self._fork_lock:  # the child's threads (backfill windows) build one
                if self._pid != os.getpid():
                    self._client = self._new_client()
                    self._pid = os.getpid()
        return self._client

    def close(self) -> None:
        if self._pid == os.getpid():
            self._client.close()

    def _where(self, method: str, path: str) -> str:
        return f"{self.name}: {method} {urlsplit(path).path or path}"

    def send_once(
        self, method: str, path: str, *, _call: _Call | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request; raises the project's errors for failures, returns 2xx/3xx as they are.

        It waits first for the host's budget: its rate, and any pause a
        429 imposed (raising :class:`HostPaused`, unsent, when that pause
        is longer than an in-call retry waits).
        """
        where = self._where(method, path)
        call = _call or _Call()
        try:
            self.budget.acquire(self.sleep, honoured=call.honoured)
        except HostPaused as exc:
            msg = f"{where}: {exc}"
            raise HostPaused(
                msg, retry_after=exc.retry_after, connector=self.name, unsent=True
            ) from None
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
        _unbind(response)
        if response.status_code < 400:
            return response
        server = self.message_of(response)
        detail = f"HTTP {response.status_code}" + (f": {server}" if server else "")
        msg = f"{where}: {detail}"
        if response.status_code in RETRIABLE_STATUS:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None and response.status_code in PAUSING_STATUS:
                # every caller of the host waits, not only this one; this
                # caller's retry waits by the retry policy, hence honoured
                call.honoured = self.budget.pause(wait)
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
        call = _Call()
        if idempotent:
            return call_with_retry(
                lambda: self.send_once(method, path, _call=call, **kwargs), retrying
            )

        def once_unless_refused() -> httpx.Response:
            try:
                return self.send_once(method, path, _call=call, **kwargs)
            except RetriableError as exc:
                if exc.status == 429 or exc.unsent:
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
            return json_loads(response.content)
        except ValueError:
            msg = f"{self._where(method, path)}: the reply is not JSON ({response.text[:120]!r})"
            raise RetriableError(msg, connector=self.name) from None
