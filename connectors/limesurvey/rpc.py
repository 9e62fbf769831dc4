"""A LimeSurvey RemoteControl 2 JSON-RPC client with session-key handling.

LimeSurvey answers every call with HTTP 200 and ``{"id", "result",
"error"}``. Two kinds of failure come back that way and are mapped here:

* protocol errors, a plain string in ``error`` (``unknown method or
  incorrect parameters``, ``unable to decode malformed json``): a
  :class:`FatalError`;
* business errors, a *successful* reply whose ``result`` is
  ``{"status": "<message>"}`` (``No permission``, ``Error: Invalid survey
  ID``…): a :class:`FatalError` carrying the message, except the statuses
  a caller declares harmless (``No survey participants found.``), which
  return ``None``.

``Invalid session key`` (spelt in several cases by different methods) is
not an error: the key expired, so :class:`RpcClient` gets a new one and
tries the call once more. Transport failures (429, 5xx, timeouts) come from
:class:`connectors.http.HttpService` as :class:`RetriableError`.

Calls that create things (``add_participants``, ``invite_participants``)
are not retried in-call after a lost reply, only after a refusal the server
did not act on (429): the caller looks the record up before trying again.
The session key and the password never appear in errors or logs.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from connectors.http import HttpService
from core.errors import FatalError, RetriableError

OK_STATUS = "OK"
"""HTTP statuses after which a non-idempotent call certainly did nothing."""


def is_invalid_session(result: Any) -> bool:
    """Whether ``result`` is LimeSurvey's "Invalid session key" (any case or spacing)."""
    text = result.get("status") if isinstance(result, dict) else result
    if not isinstance(text, str):
        return False
    return "".join(text.lower().split()) == "invalidsessionkey"


def status_of(result: Any) -> str | None:
    """The ``status`` message of a dict result, or None for any other result."""
    if isinstance(result, dict):
        status = result.get("status")
        if isinstance(status, str):
            return status
    return None


def is_error_status(status: str | None) -> bool:
    """A status that reports a failure (not ``OK`` and not ``"N left to send"``)."""
    if status is None:
        return False
    if status == OK_STATUS:
        return False
    return not status.endswith(" left to send")


class RpcClient:
    """JSON-RPC calls to ``…/index.php/admin/remotecontrol`` with a kept session key.

    Args:
        where: How errors name this client (``channels.<name>``).
        url: The RemoteControl endpoint.
        username: LimeSurvey user with ``tokens`` and ``responses`` permissions.
        password: Its password (never shown).
        http: The HTTP service to post through; built on the URL's origin
            when omitted.
        plugin: Authentication plugin name passed to ``get_session_key``.
    """

    def __init__(
        self,
        where: str,
        url: str,
        username: str,
        password: str,
        *,
        http: HttpService,
        plugin: str = "Authdb",
    ) -> None:
        self.where = where
        self.path = urlsplit(url).path or "/"
        self.http = http
        self._username = username
        self._password = password
        self._plugin = plugin
        self._key: str | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- transport -------------------------------------------------------------

    def _post(self, method: str, params: list[Any], idempotent: bool) -> Any:
        body = {"method": method, "params": params, "id": next(self._ids)}
        try:
            # a write is retried in-call only when LimeSurvey cannot have acted (HttpService)
            response = self.http.request("POST", self.path, json=body, idempotent=idempotent)
        except RetriableError as exc:
            if idempotent:
                raise
            msg = f"{exc.message} (during {method}; not retried in-call)"
            raise RetriableError(
                msg, retry_after=exc.retry_after, connector=self.http.name
            ) from None
        reply = self.http.json_of(response, "POST", self.path)
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            msg = f"{self.where}: {method}: the reply is not a JSON-RPC response"
            raise RetriableError(msg, connector=self.http.name)
        error = reply.get("error")
        if error:
            text = error if isinstance(error, str) else str(error)
            msg = f"{self.where}: {method}: LimeSurvey refused the call: {text[:300]}"
            raise FatalError(msg, connector=self.http.name, method=method)
        return reply.get("result")

    # -- session ---------------------------------------------------------------

    def session_key(self) -> str:
        """The current session key, asking LimeSurvey for one when there is none."""
        with self._lock:
            if self._key is None:
                self._key = self._login()
            return self._key

    def _login(self) -> str:
        result = self._post(
            "get_session_key", [self._username, self._password, self._plugin], idempotent=True
        )
        if isinstance(result, str) and result:
            return result
        status = status_of(result) or repr(result)[:120]
        msg = f"{self.where}: get_session_key refused for user {self._username!r}: {status}"
        raise FatalError(msg, connector=self.http.name, method="get_session_key")

    def _renew(self, stale: str) -> None:
        with self._lock:
            if self._key == stale:
                self._key = None

    def release(self) -> None:
        """Release the session key (``release_session_key``); failures are ignored."""
        with self._lock:
            key, self._key = self._key, None
        if key is None:
            return
        with contextlib.suppress(FatalError, RetriableError):
            self._post("release_session_key", [key], idempotent=True)

    # -- calls -----------------------------------------------------------------

    def call(
        self,
        method: str,
        *params: Any,
        empty: Collection[str] = (),
        idempotent: bool = True,
    ) -> Any:
        """Call ``method(session_key, *params)`` and return its result.

        Args:
            method: RemoteControl method name.
            params: Positional parameters after the session key.
            empty: Status messages meaning "nothing there" (returned as None).
            idempotent: False for calls that create or send something: they
                are retried in-call only when the server refused them (429).

        Raises:
            FatalError: protocol error, or a failure status (its message kept).
            RetriableError: transport failure (from :class:`HttpService`).
        """
        key = self.session_key()
        result = self._post(method, [key, *params], idempotent)
        if is_invalid_session(result):
            self._renew(key)
            result = self._post(method, [self.session_key(), *params], idempotent)
            if is_invalid_session(result):
                msg = f"{self.where}: {method}: LimeSurvey refuses a fresh session key"
                raise FatalError(msg, connector=self.http.name, method=method)
        status = status_of(result)
        if status is not None and status in empty:
            return None
        if is_error_status(status):
            msg = f"{self.where}: {method}: {status}"
            raise FatalError(msg, connector=self.http.name, method=method, ls_status=status)
        return result

    def close(self) -> None:
        """Release the session key and close the HTTP client."""
        self.release()
        self.http.close()
