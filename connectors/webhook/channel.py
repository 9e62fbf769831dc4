"""The ``webhook`` channel: any call centre or survey system speaking Standard Webhooks.

qloop POSTs each callback task or survey invitation to ``url`` as a signed
delivery whose ``webhook-id`` is the message's idempotency key (made
header-safe by :func:`~connectors.webhook.signing.webhook_id_for`): a
compliant receiver answers a repeated id with the same 2xx and does not act
twice, which is what makes a resend after a crash harmless. The receiver
posts outcomes back to qloop's endpoint, where :meth:`WebhookChannel.receive`
verifies and maps them; a receiver that cannot push may serve them on
``poll_url`` instead, which :meth:`WebhookChannel.collect` reads.

``lookup`` asks ``status_url`` when one is configured; otherwise it raises
:class:`NotImplementedError` and the outbox resends an in-doubt message
with the same webhook-id, which the receiver deduplicates.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

import mappings
from connectors.http import HttpService
from connectors.webhook import payloads
from connectors.webhook.options import WebhookOptions, parse_options
from connectors.webhook.signing import signed_headers, verify, webhook_id_for
from core.connector import ConnectorContext
from core.errors import FatalError, InputError, RetriableError
from core.records import CollectedBatch, Contact, OutboundMessage, Outcome, SendResult
from core.retry import call_with_retry, make_retrying

JSON = "application/json"


def _has_phone(contact: Contact) -> bool:
    return sum(ch.isdigit() for ch in contact.phone or "") >= 7


def _has_email(contact: Contact) -> bool:
    local, at, domain = (contact.email or "").strip().rpartition("@")
    return bool(local and at and "." in domain)


class WebhookChannel:
    """A Standard Webhooks channel (see the module docstring).

    Args:
        name: the channel's name in the configuration.
        options: see :data:`connectors.webhook.options.OPTIONS_SCHEMA`.
        ctx: the ``webhook`` mapping (scales, event types, reply fields),
            clock (signature timestamps, tolerance) and sleep (retries).
    """

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        self.name = name
        self.opts: WebhookOptions = parse_options(name, options)
        self.kinds = self.opts.kinds
        self.mapping: Mapping[str, Any] = ctx.mapping or mappings.load("webhook")
        self._ctx = ctx
        self._where = f"webhook channel {name}"
        self._http, self._url_path = self._service(self.opts.url)
        self._poll, self._poll_path = (None, "")
        self._status, self._status_path = (None, "")
        if self.opts.poll_url:
            self._poll, self._poll_path = self._service(self.opts.poll_url)
        if self.opts.status_url:
            self._status, self._status_path = self._service(self.opts.status_url)

    def _service(self, url: str) -> tuple[HttpService, str]:
        """A client for ``url``'s origin, and the path (with query) to request there."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return self._client(f"{parts.scheme}://{parts.netloc}"), path

    def _client(self, origin: str) -> HttpService:
        return HttpService(
            self.name,
            origin,
            headers={"user-agent": "qloop-webhook/1", "accept": JSON},
            timeout=self.opts.timeout,
            rate=self.opts.rate,
            attempts=1,  # retried here, each attempt signed afresh
            sleep=self._ctx.sleep,
            redis_url=self._ctx.redis_url,
        )

    def _retrying(self, fn: Callable[[], httpx.Response]) -> httpx.Response:
        retrying = make_retrying(attempts=self.opts.attempts, sleep=self._ctx.sleep)
        return call_with_retry(fn, retrying)

    # -- sending -------------------------------------------------------------------

    def can_reach(self, contact: Contact) -> bool:
        """Whether the receiver can reach ``contact`` (``contact`` option: phone, email, any)."""
        if self.opts.contact == "phone":
            return _has_phone(contact)
        if self.opts.contact == "email":
            return _has_email(contact)
        return _has_phone(contact) or _has_email(contact)

    def send(self, message: OutboundMessage) -> SendResult:
        """POST one signed task; the receiver's reference (or the webhook-id) comes back.

        Each attempt is signed with the current timestamp; 429, 5xx and
        connection failures are retried (``Retry-After`` honoured) with the
        same webhook-id, so at most one task exists at a compliant receiver.

        Raises:
            FatalError: wrong kind or unreachable contact (nothing sent), a
                4xx, or a redirect (not followed).
            RetriableError: still failing after ``attempts`` tries.
        """
        if message.kind not in self.kinds:
            msg = f"{self._where}: does not take {message.kind!r} messages"
            raise FatalError(msg, connector=self.name)
        if not self.can_reach(message.contact):
            msg = f"{self._where}: no usable {self.opts.contact} contact for {message.incident_key}"
            raise FatalError(msg, connector=self.name)
        doc = payloads.task_payload(message, self._ctx.clock(), self.mapping)
        body = payloads.encode(doc)
        webhook_id = webhook_id_for(message.idempotency_key)
        http = self._http

        def attempt() -> httpx.Response:
            headers = signed_headers([self.opts.signing_key], webhook_id, self._ctx.clock(), body)
            response = http.send_once(
                "POST", self._url_path, content=body, headers={**headers, "content-type": JSON}
            )
            self._refuse_redirect(response, "POST")
            return response

        response = self._retrying(attempt)
        ref = payloads.reply_ref(self._reply_json(response), self.mapping)
        return SendResult(provider_ref=ref or webhook_id)

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """Ask ``status_url`` whether the receiver holds this message (404: it does not).

        Raises:
            NotImplementedError: no ``status_url``; resending is then safe,
                because the receiver deduplicates by webhook-id.
        """
        if self._status is None:
            raise NotImplementedError
        status = self._status
        webhook_id = webhook_id_for(idempotency_key)
        path = self._status_path.rstrip("/") + "/" + quote(webhook_id, safe="")
        try:
            response = self._retrying(
                lambda: status.send_once("GET", path, headers=self._read_auth())
            )
        except FatalError as exc:
            if exc.status == 404:
                return None
            raise
        self._refuse_redirect(response, "GET")
        ref = payloads.reply_ref(self._reply_json(response), self.mapping)
        return SendResult(provider_ref=ref or webhook_id)

    def _read_auth(self) -> dict[str, str]:
        """Bearer ``poll_token``, else a signed empty-body request (fresh id each time)."""
        if self.opts.poll_token:
            return {"authorization": f"Bearer {self.opts.poll_token}"}
        request_id = "qloop-read-" + secrets.token_hex(8)
        return signed_headers([self.opts.signing_key], request_id, self._ctx.clock(), b"")

    def _refuse_redirect(self, response: httpx.Response, method: str) -> None:
        if 300 <= response.status_code < 400:
            status = response.status_code
            msg = f"{self._where}: {method} answered HTTP {status}; redirects are not followed"
            raise FatalError(msg, connector=self.name, status=response.status_code)

    def _reply_json(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # -- receiving -----------------------------------------------------------------

    def receive(self, headers: Mapping[str, str], body: bytes, url: str) -> Sequence[Outcome]:
        """Verify one delivery and map it to outcomes (nothing is stored here).

        The signature must match the inbound secret or a previous one, and
        the timestamp be within ``tolerance``; the body must be valid against
        ``outcome.schema.json``. A single outcome's ``provider_event_id`` is
        the webhook-id, so a repeated delivery stores nothing new.

        Raises:
            InputError: forged, stale, from the future, missing headers, not
                JSON, or invalid (the message names the JSON path).
        """
        verified = verify(
            headers, body, self.opts.inbound_keys, self._ctx.clock(), self.opts.tolerance_s
        )
        where = f"{self._where}: delivery {verified.webhook_id}"
        doc = payloads.decode(body, where)
        payloads.validate("outcome", doc, where)
        return payloads.outcomes_of(doc, verified.webhook_id, self.mapping, where)

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Poll ``poll_url`` for outcomes since ``cursor``; nothing when there is no poll_url.

        Each page is an ``outcome.batch`` (``outcome.schema.json``) with the
        ``cursor`` to resume after it and ``has_more``.
        """
        if self._poll is None:
            return
        poll = self._poll
        cfg = self.mapping.get("poll") or {}
        cursor_param, limit_param = (
            cfg.get("cursor_param", "since"),
            cfg.get("limit_param", "limit"),
        )
        limit = int(cfg.get("limit", 500))
        while True:
            params: dict[str, str | int] = {limit_param: limit}
            if cursor is not None:
                params[cursor_param] = cursor

            def page(p: dict[str, str | int] = params) -> httpx.Response:
                return poll.send_once("GET", self._poll_path, params=p, headers=self._read_auth())

            response = self._retrying(page)
            self._refuse_redirect(response, "GET")
            where = f"{self._where}: poll page after cursor {cursor!r}"
            doc = payloads.decode(response.content, where)
            try:
                payloads.validate("outcome", doc, where)
            except InputError as exc:
                raise FatalError(str(exc), connector=self.name) from None
            outcomes = payloads.outcomes_of(doc, None, self.mapping, where)
            next_cursor = doc.get("cursor") or cursor
            if outcomes or next_cursor != cursor:
                yield CollectedBatch(outcomes=outcomes, cursor=next_cursor)
            if not doc.get("has_more"):
                return
            if next_cursor == cursor:
                msg = f"{where}: has_more without a new cursor (the poll would never end)"
                raise RetriableError(msg, connector=self.name)
            cursor = next_cursor

    def close(self) -> None:
        """Close the HTTP clients."""
        for service in (self._http, self._poll, self._status):
            if service is not None:
                service.close()
