"""Nonconformity tickets through configured calls: found by marker, created once, followed.

Each ticket carries ``marker`` = ``qloop:`` + SHA-256 of its dedup key (a
fixed 70 characters, so it fits any text field). Before creating, the
``find`` call looks the marker up; after a create whose answer was lost
(5xx, timeout) it looks again before the error goes up, so a retry never
makes a second ticket. The status is the ``status`` call's ``field``: a
value in ``closed`` is done (closed); otherwise the mapping's status_map
gives its category. With the optional ``status_many`` block, the track step
reads many tickets' states per call (:meth:`TicketDesk.statuses`,
:mod:`.batch`): each record a ticket, read as the ``status`` call's answer is.

The nonconformity lifecycle comments and resolves the ticket as it does
Jira's or GLPI's: ``comment`` writes the text with its marker on the last
line (``{text}``), after the ``comments`` call (when configured) found no
comment holding that marker; a comment whose answer was lost is looked up
again before the error goes up. ``resolve`` comments, reads the status,
and sends the ``resolve`` call only when the ticket is not done already.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.http import HttpService
from connectors.kit.paths import read
from connectors.rest.batch import BatchCall
from connectors.rest.calls import Call, answer, records_at, render_text
from core.errors import ConnectorError, FatalError, InputError, QloopError
from core.records import Category, TicketComment, TicketRef, TicketRequest, TicketStatus
from core.timeutil import parse_instant

OWN_PREFIX = "qloop:"


def marker_of(dedup_key: str) -> str:
    return OWN_PREFIX + hashlib.sha256(dedup_key.encode()).hexdigest()


def category_of(status_map: Mapping[Any, Any], state: str) -> Category | None:
    for key, value in status_map.items():
        if str(key).strip().casefold() == state.strip().casefold():
            return Category(str(value))
    return None


class TicketDesk:
    def __init__(
        self,
        http: HttpService,
        spec: Mapping[str, Any],
        mapping: Mapping[str, Any],
        where: str,
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.http, self.mapping, self.where = http, mapping, where
        self.errors = errors
        self.create_call = Call.of(spec["create"], f"{where}.create")
        self.find_call = Call.of(spec["find"], f"{where}.find")
        self.status_call = Call.of(spec["status"], f"{where}.status")
        self.spec = {k: dict(v) for k, v in spec.items()}
        many = spec.get("status_many")
        self.many = BatchCall(http, many, f"{where}.status_many", errors) if many else None
        self.calls = {
            name: Call.of(spec[name], f"{where}.{name}")
            for name in ("comment", "comments", "resolve")
            if spec.get(name)
        }

    def _call(self, name: str) -> Call:
        call = self.calls.get(name)
        if call is None:
            msg = f"{self.where}.{name}: not configured: this source cannot {name} tickets"
            raise FatalError(msg, connector=self.http.name)
        return call

    @staticmethod
    def _comment_values(ref: str, comment: TicketComment) -> dict[str, Any]:
        return {"ref": ref, "text": comment.stamped(), "plain": comment.text,
                "marker": comment.marker, "key": comment.key}  # fmt: skip

    def _existing_comment(self, values: Mapping[str, Any]) -> str | None:
        call = self.calls.get("comments")
        if call is None:
            return None
        spec = self.spec["comments"]
        doc = answer(self.http, call.send(self.http, values, idempotent=True), call, self.errors)
        for record in records_at(doc, str(spec.get("records") or "$"), call.where):
            if str(values["marker"]) in str(read(record, str(spec.get("text") or "body")) or ""):
                found = read(record, str(spec.get("ref") or "id"))
                return str(found) if found not in (None, "") else str(values["marker"])
        return None

    def comment(self, ref: str, comment: TicketComment) -> str:
        """Comment ticket ``ref`` unless a comment holds ``comment.marker``; its id."""
        call = self._call("comment")
        values = self._comment_values(ref, comment)
        existing = self._existing_comment(values)
        if existing is not None:
            return existing
        try:
            response = call.send(self.http, values, idempotent=False)
        except ConnectorError:
            again = self._existing_comment(values)  # the answer may be lost, not the comment
            if again is not None:
                return again
            raise
        doc = answer(self.http, response, call, self.errors)
        path = self.spec["comment"].get("ref")
        made = read(doc, str(path)) if path else None
        return str(made) if made not in (None, "") else comment.marker

    def resolve(self, ref: str, comment: TicketComment) -> str:
        """Comment, then the ``resolve`` call unless the ticket is done; its status then."""
        call = self._call("resolve")
        self.comment(ref, comment)
        current = self.status(ref)
        if current.category in DONE:
            return current.status
        values = self._comment_values(ref, comment)
        answer(self.http, call.send(self.http, values), call, self.errors)
        return self.status(ref).status

    def _ref_url(self, ref: str) -> TicketRef:
        url = self.spec["create"].get("url")
        shown = render_text(str(url), {"ref": ref}, f"{self.where}.create.url") if url else ""
        return TicketRef(ref, shown or f"{self.http.base_url}")

    def find(self, values: Mapping[str, Any]) -> TicketRef | None:
        response = self.find_call.send(self.http, values, idempotent=True)
        doc = answer(self.http, response, self.find_call, self.errors)
        found = records_at(doc, str(self.spec["find"].get("records") or "$"), self.find_call.where)
        for record in found:
            ref = read(record, str(self.spec["find"].get("ref") or "id"))
            if ref not in (None, ""):
                return self._ref_url(str(ref))
        return None

    def create(self, ticket: TicketRequest) -> TicketRef:
        values = {
            "title": ticket.title,
            "description": ticket.description,
            "dedup_key": ticket.dedup_key,
            "marker": marker_of(ticket.dedup_key),
            "rule": ticket.rule,
            "severity": ticket.severity,
            "incident_key": ticket.incident_key,
            "incident_external_id": ticket.incident_external_id,
            "raised_at": ticket.raised_at.isoformat(),
            "deadline": ticket.deadline.isoformat(),
            "labels": ",".join(ticket.labels),
        }
        existing = self.find(values)
        if existing is not None:
            return existing
        try:
            response = self.create_call.send(self.http, values, idempotent=False)
        except ConnectorError:
            again = self.find(values)  # the answer may be lost, not the ticket
            if again is not None:
                return again
            raise
        ref = read(
            answer(self.http, response, self.create_call, self.errors),
            str(self.spec["create"]["ref"]),
        )
        if ref in (None, ""):
            msg = f"{self.create_call.where}.ref: no ticket id at {self.spec['create']['ref']!r}"
            raise FatalError(msg, connector=self.http.name)
        return self._ref_url(str(ref))

    def status(self, ref: str) -> TicketStatus:
        spec = self.spec["status"]
        response = self.status_call.send(self.http, {"ref": ref}, idempotent=True)
        doc = answer(self.http, response, self.status_call, self.errors)
        return self._status_of(ref, doc, str(spec.get("field") or "status"), spec.get("closed_at"))

    def statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`status` of each of ``refs``, in order, with a ``status_many`` call per
        ``max_refs`` tickets (each record a ticket: its id at ``ticket``, its state at
        ``field``, its closing time at ``closed_at``, read as the single call reads them).
        A record seen twice across pages is kept once (the first), a record of a ticket
        not asked for is dropped, and a ticket the answer does not hold is read with the
        ``status`` call, so it fails as alone.

        Raises:
            ConnectorError: a batch call failed (the caller reads each ticket alone).
        """
        assert self.many is not None
        spec = self.spec["status_many"]
        ticket, field = str(spec["ticket"]), str(spec["field"])
        found: dict[str, TicketStatus | Exception] = {}
        for chunk in self.many.chunks(refs):
            records: dict[str, dict[str, Any]] = {}
            for record in self.many.records(chunk):
                records.setdefault(str(read(record, ticket)), record)
            for ref in chunk:
                try:
                    hit = records.get(ref)
                    found[ref] = (
                        self.status(ref)
                        if hit is None
                        else self._status_of(ref, hit, field, spec.get("closed_at"))
                    )
                except QloopError as exc:
                    found[ref] = exc
        return [found[ref] for ref in refs]

    def _status_of(self, ref: str, doc: Any, field: str, closed_at: Any) -> TicketStatus:
        """The status of ticket ``ref`` from ``doc``: its state at ``field``, closing time at
        ``closed_at`` (the ``status`` block's ``closed`` states and the status map)."""
        spec = self.spec["status"]
        state = str(read(doc, field) or "")
        closed = {str(c).casefold() for c in spec.get("closed") or []}
        category = category_of(self.mapping.get("status_map") or {}, state)
        if state.casefold() in closed and (category is None or category not in DONE):
            category = Category.CLOSED
        if category is None:
            msg = f"{self.http.name}: ticket {ref} has state {state!r}, not in status_map"
            raise FatalError(msg, connector=self.http.name)
        at: datetime | None = None
        raw_at = read(doc, str(closed_at)) if closed_at else None
        if category in DONE and raw_at:
            try:
                at = parse_instant(str(raw_at), _zone(self.mapping))
            except InputError as exc:
                msg = f"{self.status_call.where}.closed_at: ticket {ref}: {exc}"
                raise FatalError(msg, connector=self.http.name) from None
        return TicketStatus(ref, state, category, at)


DONE = (Category.RESOLVED, Category.CLOSED, Category.CANCELLED)


def _zone(mapping: Mapping[str, Any]) -> ZoneInfo:
    return ZoneInfo(str(mapping.get("timezone") or "UTC"))
