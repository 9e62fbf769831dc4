"""What both Twilio channels share: options, credentials, REST client, mapping, webhooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

import mappings
from connectors.twilio import signature
from connectors.twilio.events import OutcomeMapping
from connectors.twilio.options import credentials_of, resolve_options
from connectors.twilio.phone import to_e164
from connectors.twilio.rest import TwilioRest, parse_date
from core.connector import ConnectorContext
from core.errors import ConfigError, FatalError, InputError
from core.records import Contact, MessageKind, OutboundMessage
from core.timeutil import to_utc


class TwilioChannelBase:
    """Options, REST client, outcome mapping and signature checks of one Twilio channel.

    Subclasses set :attr:`schema` and :attr:`product` and implement the
    :class:`core.connector.Channel` methods that differ.
    """

    schema: Mapping[str, Any]
    product: str

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.where = f"channels.{name}"
        self.opts = resolve_options(self.schema, options, self.where)
        self.name = name
        self.ctx = ctx
        self.creds = credentials_of(self.opts)
        self.mapping = OutcomeMapping.from_mapping(ctx.mapping or mappings.load("twilio"))
        self.rest = TwilioRest(
            f"{self.product} {name}",
            str(self.opts["base_url"]),
            (self.creds.username, self.creds.password),
            timeout=float(self.opts["timeout"]),
            rate=float(self.opts["rate"]),
            sleep=ctx.sleep,
            transport=transport,
            redis_url=ctx.redis_url,
        )
        self.kinds: frozenset[MessageKind] = frozenset()

    # -- Channel helpers ---------------------------------------------------------

    def phone_of(self, contact: Contact) -> str | None:
        """The contact's phone in E.164, or None."""
        return to_e164(contact.phone, str(self.opts["default_country_code"]))

    def can_reach(self, contact: Contact) -> bool:
        """Twilio calls and texts phones: the contact needs a number usable as E.164."""
        return self.phone_of(contact) is not None

    def check_message(self, message: OutboundMessage) -> str:
        """The E.164 number to call for ``message``, or FatalError (wrong kind, no phone)."""
        if message.kind not in self.kinds:
            msg = f"{self.rest.http.name}: cannot take a {message.kind!r} message"
            raise FatalError(msg, connector=self.name)
        phone = self.phone_of(message.contact)
        if phone is None:
            msg = f"{self.rest.http.name}: no usable phone number for {message.incident_key}"
            raise FatalError(msg, connector=self.name)
        return phone

    def now(self) -> datetime:
        return to_utc(self.ctx.clock())

    def window(self, cursor: str | None) -> tuple[datetime, datetime]:
        """[start, end] instants a collect reads: from the cursor less the overlap, to now."""
        end = self.now()
        if cursor is None:
            return end - timedelta(seconds=int(self.opts["lookback"])), end
        try:
            since = parse_date(cursor, "collect cursor")
        except InputError as exc:
            msg = f"{self.rest.http.name}: bad collect cursor {cursor!r}"
            raise InputError(msg, field="cursor") from exc
        return min(since, end) - timedelta(seconds=int(self.opts["overlap"])), end

    # -- webhooks ----------------------------------------------------------------

    def verified(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> tuple[bool, Sequence[tuple[str, str]]]:
        """Check ``X-Twilio-Signature``; returns (JSON body?, form parameters).

        Raises:
            ConfigError: no ``auth_token`` configured (signatures cannot be checked).
            InputError: forged, missing or mismatched signature.
        """
        key = self.creds.signing_key
        if not key:
            msg = f"{self.where}.auth_token: required to check X-Twilio-Signature on webhooks"
            raise ConfigError(msg)
        params = signature.verify(key, headers, body, url, self.opts.get("callback_url"))
        return signature.is_json(headers, url), params

    def close(self) -> None:
        """Close the HTTP client."""
        self.rest.close()
