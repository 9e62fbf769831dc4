"""Nonconformity tickets in GLPI: created once per dedup key, then followed to closure.

The dedup key is the title's suffix, ``… [qloop:itsm:4821:callback_missed@…]``:
before creating, a search on the title (field 1, ``contains``) looks for it,
so a create retried after a lost answer finds the first ticket instead of
making a second one. The new ticket is linked to the incident
(``Ticket_Ticket``, link 1 "linked to") when the incident is a ticket of the
same GLPI; a link that GLPI refuses is logged, not fatal.

Ticket fields (``type``, ``urgency``, ``itilcategories_id``, ``entities_id``)
come from the source's ``ticket`` options, else from the mapping's
``ticket`` section. The status is read with ``GET /Ticket/{id}``: 5 Solved
and 6 Closed are done, with ``solvedate``/``closedate`` as the closing time.
Many tickets' statuses (the track step) are read with ``GET
/getMultipleItems`` (apirest.md, "Get multiple items": "Get an item" per
line, in one call), 50 tickets a call; a chunk the call refuses (one ticket
gone) is read again by halves down to the missing ticket, read alone.

A changed finding is written as a followup (``POST /ITILFollowup``, itemtype
Ticket) whose text carries its key; the ticket's followups are read first
(``GET /Ticket/{id}/ITILFollowup``, every page), so a retry never writes it twice. A
withdrawn finding's ticket gets the followup, then a solution
(``POST /ITILSolution``: GLPI moves the ticket to 5 Solved) unless it is
solved or closed already.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.glpi.convert import ServerClock, decode_text, html_to_text
from connectors.glpi.readback import followups
from connectors.glpi.search import NAME, search_page
from connectors.glpi.session import GlpiSession, error_code
from connectors.glpi.tickets import BULK, STATUS_NAMES, as_int, chunks
from connectors.kit.halves import read_halving
from core.errors import ConnectorError, FatalError, InputError, QloopError, RetriableError
from core.records import Category, TicketComment, TicketRef, TicketRequest, TicketStatus

log = logging.getLogger("qloop.connectors.glpi")
TITLE_MAX = 250
LINKED_TO = 1
_FIELDS = {"type": "type", "urgency": "urgency", "category": "itilcategories_id",
           "entity": "entities_id"}  # fmt: skip
_DEFAULTS = {"type": 1, "urgency": 3}


def marker(dedup_key: str) -> str:
    """The title suffix that carries a dedup key."""
    return f"[{dedup_key}]"


def ticket_title(title: str, dedup_key: str) -> str:
    """``title`` shortened as needed so the marker always fits GLPI's 255 characters."""
    tag = marker(dedup_key)
    room = TITLE_MAX - len(tag) - 1
    if room < 8:
        msg = f"dedup key too long for a GLPI title ({len(dedup_key)} characters)"
        raise InputError(msg, field="dedup_key")
    text = " ".join(title.split())
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    return f"{text} {tag}"


def paragraphs_html(text: str) -> str:
    """Plain text as GLPI HTML: escaped paragraphs, line breaks kept."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.splitlines()) + "</p>"
        for p in paragraphs
    )


def ticket_content(ticket: TicketRequest) -> str:
    """The description as GLPI HTML (escaped paragraphs), with the key and labels."""
    body = paragraphs_html(ticket.description)
    meta = [f"qloop key: {ticket.dedup_key}", f"incident: {ticket.incident_key}"]
    if ticket.labels:
        meta.append("labels: " + ", ".join(ticket.labels))
    return body + "<p>" + "<br>".join(html.escape(m) for m in meta) + "</p>"


def _item_refused(exc: Exception) -> bool:
    """``getMultipleItems`` refused whole: one item missing or hidden."""
    return error_code(exc) in ("ERROR_ITEM_NOT_FOUND", "ERROR_RIGHT_MISSING")


class TicketWriter:
    """Creates and reads nonconformity tickets through one session."""

    def __init__(
        self,
        session: GlpiSession,
        clock: ServerClock,
        mapping: Mapping[str, Any],
        ticket_options: Mapping[str, int],
    ) -> None:
        self.session = session
        self.clock = clock
        self.status_map = mapping.get("status_map") or {}
        fields: dict[str, int] = dict(_DEFAULTS)
        template = mapping.get("ticket") or {}
        for source in (template, ticket_options):
            for key, glpi_field in _FIELDS.items():
                value = as_int(source.get(key))
                if value is not None:
                    fields[glpi_field] = value
        self.fields = fields

    def find(self, dedup_key: str) -> int | None:
        """The id of the ticket whose title carries ``dedup_key``, if one exists."""
        tag = marker(dedup_key)
        page = search_page(self.session, [(NAME, "contains", dedup_key)], 0, 50, sort="2")
        for row in page.rows:
            name = decode_text(row.get("name")) or ""
            if name.endswith(tag) and as_int(row.get("id")) is not None:
                return as_int(row.get("id"))
        return None

    def create(self, ticket: TicketRequest) -> TicketRef:
        """Create the ticket unless it exists; link it to its incident."""
        existing = self.find(ticket.dedup_key)
        if existing is None:
            body = {
                "input": {
                    "name": ticket_title(ticket.title, ticket.dedup_key),
                    "content": ticket_content(ticket),
                    **self.fields,
                }
            }
            try:  # not retried in-call: a lost answer may hide a created ticket
                reply = self.session.post("/Ticket", body, once=True)
            except RetriableError:
                existing = self.find(ticket.dedup_key)
                if existing is None:
                    raise
                reply = {"id": existing}
            new_id = as_int(reply.get("id")) if isinstance(reply, Mapping) else None
            if not new_id:
                msg = f"{self.session.name}: POST /Ticket: no ticket id in the reply ({reply!r})"
                raise FatalError(msg[:300], connector=self.session.name)
            existing = new_id
        self._link(existing, ticket.incident_external_id)
        return TicketRef(ref=str(existing), url=self.url(existing))

    def url(self, ticket_id: int) -> str:
        """The ticket's page in GLPI's web interface."""
        root = self.session.opts.base_url.rsplit("/apirest.php", 1)[0]
        return f"{root}/front/ticket.form.php?id={ticket_id}"

    def _link(self, ticket_id: int, incident: str) -> None:
        incident_id = as_int(incident)
        if incident_id is None or incident_id <= 0 or incident_id == ticket_id:
            return
        try:
            links = self.session.get(f"/Ticket/{ticket_id}/Ticket_Ticket")
            for link in links if isinstance(links, list) else []:
                ends = {as_int(link.get("tickets_id_1")), as_int(link.get("tickets_id_2"))}
                if incident_id in ends:
                    return
            body = {"input": {"tickets_id_1": ticket_id, "tickets_id_2": incident_id,
                              "link": LINKED_TO}}  # fmt: skip
            self.session.post("/Ticket_Ticket", body)
        except FatalError as exc:
            log.warning(
                "%s: ticket %s not linked to incident %s: %s",
                self.session.name, ticket_id, incident_id, exc,
            )  # fmt: skip

    def _ticket_id(self, ref: str) -> int:
        ticket_id = as_int(ref)
        if ticket_id is None:
            msg = f"{self.session.name}: {ref!r} is not a GLPI ticket id"
            raise FatalError(msg, ref=ref)
        return ticket_id

    def comment(self, ref: str, comment: TicketComment) -> str:
        """Add a followup to ticket ``ref`` unless one carries ``comment.marker``; its id."""
        ticket_id = self._ticket_id(ref)
        for row in followups(self.session, ticket_id):  # every page: GLPI pages sub-items
            if comment.marker in (html_to_text(row.get("content")) or ""):
                return str(row.get("id"))
        body = {
            "input": {
                "itemtype": "Ticket",
                "items_id": ticket_id,
                "content": paragraphs_html(comment.stamped()),
            }
        }
        reply = self.session.post("/ITILFollowup", body, once=True)
        new_id = as_int(reply.get("id")) if isinstance(reply, Mapping) else None
        if not new_id:
            msg = f"{self.session.name}: POST /ITILFollowup: no followup id in the reply"
            raise RetriableError(msg, connector=self.session.name)
        return str(new_id)

    def resolve(self, ref: str, comment: TicketComment) -> str:
        """Followup, then a solution (5 Solved) unless solved or closed; the status's name."""
        self.comment(ref, comment)
        current = self.status(ref)
        if current.is_done:
            return current.status
        ticket_id = self._ticket_id(ref)
        body = {
            "input": {
                "itemtype": "Ticket",
                "items_id": ticket_id,
                "content": paragraphs_html(comment.text),
            }
        }
        self.session.post("/ITILSolution", body, once=True)
        return self.status(ref).status

    def status(self, ref: str) -> TicketStatus:
        """The ticket's status; done at 5 Solved or 6 Closed.

        Raises:
            FatalError: no such ticket (or not visible to the API user).
        """
        ticket_id = as_int(ref)
        if ticket_id is None:
            msg = f"{self.session.name}: {ref!r} is not a GLPI ticket id"
            raise FatalError(msg, ref=ref)
        try:
            data = self.session.get(f"/Ticket/{ticket_id}", params={"get_hateoas": "false"})
        except ConnectorError as exc:
            if error_code(exc) == "ERROR_ITEM_NOT_FOUND":
                msg = f"{self.session.name}: ticket {ticket_id} not found"
                raise FatalError(msg, ref=ref) from exc
            raise
        return self._status_of(ticket_id, ref, data)

    def statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`status` of each of ``refs``, in order: one ``getMultipleItems`` per
        :data:`~connectors.glpi.tickets.BULK` tickets (each line is "Get an item", the
        single read's ``GET /Ticket/{id}`` with the same ``get_hateoas``).

        The call fails whole when one item is missing or hidden (404
        ``ERROR_ITEM_NOT_FOUND``, ``ERROR_RIGHT_MISSING``): that chunk is then read again
        by halves (:func:`~connectors.kit.halves.read_halving`) down to the missing
        ticket, which is read alone, so it fails as the single read does. A ref
        that is no ticket id, or a ticket the answer lacks, is read alone too.

        Raises:
            ConnectorError: a call failed otherwise (the caller reads each ticket alone).
        """
        wanted = list(dict.fromkeys(refs))
        found: dict[str, TicketStatus | Exception] = {}
        ids = {ref: as_int(ref) for ref in wanted}
        numeric = [ref for ref in wanted if ids[ref] is not None]
        for chunk in chunks(numeric, BULK):
            items = read_halving([str(ids[ref]) for ref in chunk], self._tickets, _item_refused)
            for ref in chunk:
                ticket_id = ids[ref]
                assert ticket_id is not None
                item = items.get(str(ticket_id))
                try:
                    found[ref] = (
                        self.status(ref) if item is None else self._status_of(ticket_id, ref, item)
                    )
                except QloopError as exc:
                    found[ref] = exc
        for ref in wanted:
            if ref not in found:
                try:
                    found[ref] = self.status(ref)
                except QloopError as exc:
                    found[ref] = exc
        return [found[ref] for ref in refs]

    def _tickets(self, refs: list[str]) -> dict[str, Mapping[str, Any]]:
        """Tickets ``refs`` (ticket ids as text) by id: one ``getMultipleItems`` call."""
        params = [("get_hateoas", "false")]
        for i, ref in enumerate(refs):
            params += [(f"items[{i}][itemtype]", "Ticket"), (f"items[{i}][items_id]", ref)]
        data = self.session.get("/getMultipleItems", params=params)
        items: dict[str, Mapping[str, Any]] = {}
        for item in data if isinstance(data, list) else []:
            if isinstance(item, Mapping) and as_int(item.get("id")) is not None:
                items.setdefault(str(as_int(item["id"])), item)
        return items

    def _status_of(self, ticket_id: int, ref: str, data: Any) -> TicketStatus:
        status = as_int(data.get("status")) if isinstance(data, Mapping) else None
        if status is None:
            msg = f"{self.session.name}: GET /Ticket/{ticket_id}: no status in the reply"
            raise FatalError(msg, ref=ref)
        category = self._category(status)
        closed_at = None
        if status == 6:
            closed_at = self.clock.parse(data.get("closedate")) or self.clock.parse(
                data.get("solvedate")
            )
        elif status == 5:
            closed_at = self.clock.parse(data.get("solvedate"))
        return TicketStatus(
            ref=str(ticket_id),
            status=STATUS_NAMES.get(status, str(status)),
            category=category,
            closed_at=closed_at,
        )

    def _category(self, status: int) -> Category:
        for key, value in self.status_map.items():
            if as_int(key) == status:
                return Category(str(value))
        return {5: Category.RESOLVED, 6: Category.CLOSED}.get(status, Category.IN_PROGRESS)
