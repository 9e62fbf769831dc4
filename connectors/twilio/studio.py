"""``twilio_studio``: automated calls or SMS through a Studio flow (callbacks and surveys).

``send`` starts one Execution of the flow (To, From, and Parameters with
the correlation token, the idempotency key and the incident), after
looking for one already started for the same key. Studio has no search by
parameter: the executions created within ``lookback`` are listed, those to
the same number (``contact_channel_address``) are opened, and their
context's ``flow.data.qloop_key`` compared. Studio also refuses a second
active execution for one contact (HTTP 409): that answer is checked the
same way, and is otherwise retried later.

``lookup`` without a phone number must open the context of every recent
execution; past ``lookup_max_scan`` executions it raises
NotImplementedError (the outbox then sends again with the same key, and
``send``'s own phone-narrowed search still prevents a duplicate).

Outcomes: the flow posts its results with a Make HTTP Request widget
(``receive``, signed by Twilio); ``collect`` reads ended executions'
contexts as the safety net.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from connectors.twilio.base import TwilioChannelBase
from connectors.twilio.events import studio_callback_outcomes, studio_context_outcomes
from connectors.twilio.options import STUDIO_OPTIONS_SCHEMA
from connectors.twilio.rest import iso_z, parse_date
from core.errors import FatalError, InputError, RetriableError
from core.records import CollectedBatch, OutboundMessage, Outcome, SendResult

ACTIVE_RETRY_S = 900.0
"""When the contact already has an active execution of the flow, try again after this."""


class StudioChannel(TwilioChannelBase):
    """A callback and/or survey channel on a Studio flow (options: ``STUDIO_OPTIONS_SCHEMA``)."""

    schema = STUDIO_OPTIONS_SCHEMA
    product = "Studio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kinds = frozenset(self.opts["kinds"])
        self.flow = str(self.opts["flow_sid"])
        self.executions_path = f"/v2/Flows/{self.flow}/Executions"

    def parameters(self, message: OutboundMessage) -> dict[str, Any]:
        """The execution's Parameters, available in the flow as ``{{flow.data.<name>}}``."""
        return {
            "qloop_key": message.idempotency_key,
            self.mapping.studio_token: message.correlation_token,
            self.mapping.studio_kind: message.kind,
            "qloop_source": message.source,
            "incident_key": message.incident_key,
            "incident_external_id": message.incident_external_id,
            "title": message.title,
            "priority": message.priority,
            "name": message.contact.name,
            "customer": message.customer,
            "due_at": iso_z(message.due_at) if message.due_at else None,
        }

    def send(self, message: OutboundMessage) -> SendResult:
        """Start the flow for ``message`` unless an execution already holds its key.

        Raises:
            FatalError: wrong kind, no usable phone, or Twilio refused the execution.
            RetriableError: Twilio unavailable, the reply was lost, or the
                contact is in another active execution of the flow.
        """
        phone = self.check_message(message)
        found = self._search(message.idempotency_key, phone)
        if found is not None:
            return found
        form = {
            "To": phone,
            "From": self.opts["from_number"],
            "Parameters": json.dumps(self.parameters(message), ensure_ascii=False),
        }
        try:
            execution = self.rest.create(self.executions_path, form)
        except FatalError as exc:
            if exc.status != 409:
                raise
            found = self._search(message.idempotency_key, phone)
            if found is not None:
                return found
            msg = (
                f"{self.rest.http.name}: {message.incident_key}: "
                "the contact is in another active execution of the flow"
            )
            raise RetriableError(msg, retry_after=ACTIVE_RETRY_S, connector=self.name) from None
        sid = execution.get("sid")
        if not isinstance(sid, str) or not sid:
            msg = f"{self.rest.http.name}: POST {self.executions_path}: the reply has no sid"
            raise RetriableError(msg, connector=self.name)
        return SendResult(provider_ref=sid)

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """The execution holding ``idempotency_key`` within ``lookback``, or None.

        Raises:
            NotImplementedError: more than ``lookup_max_scan`` recent
                executions would have to be opened to tell.
        """
        return self._search(idempotency_key, None)

    def _recent(self, days_back: timedelta) -> Iterator[dict[str, Any]]:
        now = self.now()
        params = [
            ("DateCreatedFrom", iso_z(now - days_back)),
            ("DateCreatedTo", iso_z(now + timedelta(minutes=5))),
            ("PageSize", str(self.opts["page_size"])),
        ]
        for page in self.rest.pages(self.executions_path, "executions", params):
            yield from page

    def _context(self, sid: str) -> dict[str, Any]:
        doc = self.rest.get(f"{self.executions_path}/{sid}/Context")
        context = doc.get("context")
        return context if isinstance(context, dict) else {}

    def _search(self, key: str, phone: str | None) -> SendResult | None:
        lookback = timedelta(seconds=int(self.opts["lookback"]))
        limit = int(self.opts["lookup_max_scan"])
        candidates = [
            e
            for e in self._recent(lookback)
            if e.get("sid") and (phone is None or e.get("contact_channel_address") == phone)
        ]
        if phone is None and len(candidates) > limit:
            msg = f"{len(candidates)} recent executions to open (lookup_max_scan={limit})"
            raise NotImplementedError(msg)
        candidates.sort(key=lambda e: str(e.get("date_created") or ""))
        for execution in candidates:
            data = self._context(str(execution["sid"])).get("flow", {}).get("data", {})
            if isinstance(data, dict) and data.get("qloop_key") == key:
                return SendResult(provider_ref=str(execution["sid"]))
        return None

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Outcomes of executions ended since ``cursor`` (created within ``lookback`` before it)."""
        start, end = self.window(cursor)
        created_from = start - timedelta(seconds=int(self.opts["lookback"]))
        params = [
            ("DateCreatedFrom", iso_z(created_from)),
            ("DateCreatedTo", iso_z(end)),
            ("PageSize", str(self.opts["page_size"])),
        ]
        for page in self.rest.pages(self.executions_path, "executions", params):
            outcomes: list[Outcome] = []
            for execution in page:
                if execution.get("status") != "ended" or not execution.get("sid"):
                    continue
                ended = parse_date(execution.get("date_updated"), "execution date_updated")
                if not start <= ended <= end:
                    continue
                context = self._context(str(execution["sid"]))
                outcomes.extend(studio_context_outcomes(self.mapping, execution, context))
            yield CollectedBatch(outcomes=outcomes, cursor=cursor)
        yield CollectedBatch(outcomes=[], cursor=iso_z(end))

    def receive(self, headers: Mapping[str, str], body: bytes, url: str) -> Sequence[Outcome]:
        """Verify a flow's callback (form or JSON) and return its outcome.

        Raises:
            InputError: forged or missing signature, or a body without the
                execution SID.
        """
        is_json, params = self.verified(headers, body, url)
        values: Mapping[str, Any]
        if is_json:
            try:
                decoded = json.loads(body or b"{}")
            except ValueError as exc:
                msg = "Studio callback: the JSON body is not valid JSON"
                raise InputError(msg, field="body") from exc
            if not isinstance(decoded, dict):
                msg = "Studio callback: the JSON body must be an object"
                raise InputError(msg, field="body")
            values = decoded
        else:
            values = dict(params)
        return studio_callback_outcomes(self.mapping, values, self.now())
