"""Twilio REST over :class:`connectors.http.HttpService` (no SDK).

Twilio takes form-encoded POST bodies, Basic auth (``AccountSid:AuthToken``
or ``ApiKeySid:ApiKeySecret``) and answers errors as
``{"code", "message", "more_info", "status"}``; those become the project's
errors through HttpService (429 with Retry-After, code 20429, is retried
there). Lists page with ``meta.next_page_url`` (an absolute URL that
carries the filters and a ``PageToken``).

Dates: REST v2010 writes RFC 2822 (``Wed, 25 Nov 2026 10:00:00 +0000``),
TaskRouter v1 and Studio v2 write ISO 8601; :func:`parse_date` reads both.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from connectors.http import HttpService
from core.errors import FatalError, InputError, RetriableError
from core.timeutil import parse_instant, to_utc

FormData = Mapping[str, Any] | Sequence[tuple[str, Any]]
MAX_PAGES = 10_000
"""A list longer than this many pages is a server bug (loop guard)."""


def twilio_message(response: httpx.Response) -> str | None:
    """``Twilio error <code>: <message>`` from an error reply (None: no usable body)."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or None
    if not isinstance(data, dict):
        return None
    code, message = data.get("code"), data.get("message")
    if code is None and message is None:
        return None
    return f"Twilio error {code}: {message}" if code is not None else str(message)


def parse_date(value: Any, where: str = "date") -> datetime:
    """An aware UTC instant from a Twilio date: ISO 8601, RFC 2822 or epoch seconds/ms.

    Raises:
        InputError: ``value`` is none of those (``where`` names the field).
    """
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(int(seconds), UTC)
    text = str(value or "").strip()
    if text.isdigit():
        return parse_date(int(text), where)
    if text[:4].isdigit() and "-" in text:
        try:
            return parse_instant(text)
        except InputError as exc:
            msg = f"{where}: {exc}"
            raise InputError(msg, field=where) from exc
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        msg = f"{where}: not a Twilio date (ISO 8601 or RFC 2822): {text!r}"
        raise InputError(msg, field=where)
    return to_utc(parsed)


def iso_z(value: datetime) -> str:
    """An instant as Twilio's filters take it: ``2026-11-20T10:00:00Z``."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class TwilioRest:
    """One Twilio product API (TaskRouter, Studio…) for one channel.

    Args:
        name: the channel's name (error messages).
        base_url: the product's root, e.g. ``https://taskrouter.twilio.com``.
        auth: Basic-auth pair.
        timeout: seconds per request.
        rate: requests per second to the host (0: no cap).
        sleep: how retries wait (tests pass a fake).
        transport: an ``httpx`` transport (tests).
        redis_url: the deployment's Redis (the host budget shared by every process).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        auth: tuple[str, str],
        *,
        timeout: float = 30.0,
        rate: float = 0.0,
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.http = HttpService(
            name,
            base_url,
            auth=auth,
            timeout=timeout,
            rate=rate,
            sleep=sleep,
            message_of=twilio_message,
            headers={"Accept": "application/json"},
            transport=transport,
            redis_url=redis_url,
        )
        self._origin = urlsplit(self.http.base_url)[:2]

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: FormData | None = None) -> dict[str, Any]:
        """GET a resource (retried on 429/5xx); its JSON object."""
        data = self.http.get_json(path, params=params)
        return self._object(data, "GET", path)

    def create(self, path: str, form: FormData) -> dict[str, Any]:
        """POST a form that creates something: **not** retried in-call.

        A create whose reply was lost may have happened; only the caller
        can check (search by its idempotency key) before trying again.
        """
        response = self.http.send_once("POST", path, **_form(form))
        return self._object(self.http.json_of(response, "POST", path), "POST", path)

    def update(self, path: str, form: FormData) -> dict[str, Any]:
        """POST a form that updates a resource to given values (idempotent: retried)."""
        response = self.http.request("POST", path, **_form(form))
        return self._object(self.http.json_of(response, "POST", path), "POST", path)

    def pages(
        self, path: str, key: str, params: FormData | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's items (under ``key``), following ``meta.next_page_url``."""
        url: str | None = path
        query: FormData | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = self.get(url, query)
            items = page.get(key)
            if not isinstance(items, list):
                msg = f"{self.http.name}: GET {path}: the reply has no {key!r} list"
                raise RetriableError(msg, connector=self.http.name)
            yield [i for i in items if isinstance(i, dict)]
            meta = page.get("meta")
            meta = meta if isinstance(meta, dict) else {}
            url, query = self._next(meta.get("next_page_url"), path), None
        msg = f"{self.http.name}: GET {path}: more than {MAX_PAGES} pages (paging loop?)"
        raise FatalError(msg, connector=self.http.name)

    def _next(self, next_url: Any, path: str) -> str | None:
        if not next_url:
            return None
        parts = urlsplit(str(next_url))
        if parts.scheme and parts[:2] != self._origin:
            msg = f"{self.http.name}: GET {path}: next_page_url points to another host"
            raise FatalError(msg, connector=self.http.name)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _object(self, data: Any, method: str, path: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            msg = f"{self.http.name}: {method} {urlsplit(path).path}: expected a JSON object"
            raise RetriableError(msg, connector=self.http.name)
        return data


def _form(form: FormData) -> dict[str, Any]:
    """Request arguments for a form-encoded body (repeated names allowed)."""
    items = form.items() if isinstance(form, Mapping) else form
    pairs = [(k, _text(v)) for k, v in items if v is not None]
    return {
        "content": urlencode(pairs).encode("ascii"),
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
