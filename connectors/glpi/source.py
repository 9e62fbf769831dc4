"""The ``glpi`` source: GLPI's legacy REST API (``apirest.php``, GLPI 9.5–11).

Pull, write-back and probe on one session (:mod:`connectors.glpi.session`);
how tickets are found and mapped is in :mod:`connectors.glpi.pull` and
:mod:`connectors.glpi.tickets`, nonconformity tickets in
:mod:`connectors.glpi.writeback`.

GLPI 11 keeps ``apirest.php`` (this connector's API) beside its new
High-Level API (``/api.php/v2``, OAuth2 tokens, RSQL filters, no ``input``
wrapper on writes). The differences that matter here: GLPI 11 returns text
raw rather than HTML-encoded (decoding handles both), and the HL API's
Ticket schema has no ``solvedate``, ``closedate`` or ``time_to_*``, so SLA
work stays on ``apirest.php``. 11.0.7 broke some ``apirest.php`` sessions
(glpi #24211): pin a fixed release.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import httpx

import mappings
from connectors.glpi.convert import ServerClock, decode_text
from connectors.glpi.options import GlpiOptions, resolve
from connectors.glpi.probe import explain
from connectors.glpi.pull import Puller
from connectors.glpi.readback import ReadBack
from connectors.glpi.search import count, search_page, window
from connectors.glpi.session import GlpiSession
from connectors.glpi.writeback import TicketWriter
from core.connector import ConnectorContext
from core.errors import ConnectorError, FatalError
from core.records import (
    PulledBatch,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)


class GlpiSource:
    """A GLPI server as a qloop source (``Source``, ``Probe``, ``TicketNotes``, ``TicketFields``).

    Args:
        name: The source's name in the configuration.
        options: See :data:`connectors.glpi.options.OPTIONS_SCHEMA`.
        ctx: Mapping (the ``glpi`` default when empty), clock and sleep.
        transport: An ``httpx`` transport (tests).
    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.opts: GlpiOptions = resolve(name, options)
        self.mapping = dict(ctx.mapping) if ctx.mapping else mappings.load("glpi")
        self.clock = ServerClock(self.opts.server_tz)
        self.session = GlpiSession(name, self.opts, ctx.sleep, transport, ctx.redis_url)
        self.puller = Puller(name, self.session, self.clock, self.mapping, self.opts)
        self.writer = TicketWriter(self.session, self.clock, self.mapping, self.opts.ticket)
        self.readback = ReadBack(self.session, self.clock)

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Tickets changed since ``cursor`` (see :mod:`connectors.glpi.pull`).

        Without a cursor and with ``backfill_from``, a concurrent backfill of
        everything modified since then; without either, every visible ticket.
        """
        return self.puller.pull(cursor)

    def count_in_scope(self) -> int | None:
        """GLPI's ``totalcount`` of what a first sync reads: live and trashed tickets of
        every status (since ``backfill_from`` when set), qloop's own tickets left out."""
        lower = None
        if self.opts.backfill_from is not None:
            lower = self.clock.lower_bound(self.opts.backfill_from)
        return count(self.session, lower)

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        """Create a nonconformity ticket, or return the one already holding its dedup key."""
        return self.writer.create(ticket)

    def ticket_status(self, ref: str) -> TicketStatus:
        """Status of a ticket qloop created (done at Solved or Closed)."""
        return self.writer.status(ref)

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`ticket_status` of many tickets: one ``getMultipleItems`` per 50."""
        return self.writer.statuses(refs)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        """A followup on a ticket qloop created, once per comment key."""
        return self.writer.comment(ref, comment)

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        """Followup and solution of a ticket qloop created (left alone when done)."""
        return self.writer.resolve(ref, comment)

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """The followups of ticket ``ref`` (private and public) as plain text, oldest first."""
        return self.readback.notes(ref)

    def ticket_fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Fields ``names`` of ticket ``ref`` (``GET /Ticket/{id}``; rich text as plain text)."""
        return self.readback.fields(ref, names)

    def probe(self) -> list[str]:
        """Session, profile, entities and the tickets in scope, or a FatalError naming the cause.

        Raises:
            FatalError: what failed and why (credentials, rights, base URL, TLS,
                connection), with what to fix.
        """
        url = self.opts.base_url

        def step(what: str, call: Callable[[], Any]) -> Any:
            try:
                return call()
            except ConnectorError as exc:
                text = explain(self.name, what, exc)
                raise FatalError(text, connector=self.name, status=exc.status) from None

        step("GET /initSession (opening a session)", self.session.token)
        session = step("GET /getFullSession", lambda: self.session.get("/getFullSession")) or {}
        profiles = step("GET /getMyProfiles", lambda: self.session.get("/getMyProfiles")) or {}
        entities = (
            step("GET /getActiveEntities", lambda: self.session.get("/getActiveEntities")) or {}
        )
        counts: list[int | None] = []
        for deleted in (False, True):
            what = "GET /search/Ticket" + (" (trash)" if deleted else "")
            page = step(
                what,
                partial(search_page, self.session, window(None, None), 0, 1, trash=deleted),
            )
            counts.append(page.total)
        live, trash = counts
        info = session.get("session", {}) if isinstance(session, Mapping) else {}
        profile = info.get("glpiactiveprofile", {}) if isinstance(info, Mapping) else {}
        active = entities.get("active_entity", {}) if isinstance(entities, Mapping) else {}
        mine = profiles.get("myprofiles", []) if isinstance(profiles, Mapping) else []
        who = decode_text(info.get("glpiname")) or "?"
        known = live is not None and trash is not None
        visible = (
            f"{(live or 0) + (trash or 0)} tickets in scope (every status; {trash} in the trash)"
            if known
            else "unknown number of tickets in scope"
        )
        return [
            f"GLPI at {url} (server time zone {self.opts.server_tz.key})",
            f"logged in as {who}, profile {decode_text(profile.get('name')) or '?'} "
            f"({len(mine)} profiles available)",
            f"active entity {active.get('id', '?')}"
            f"{' and its children' if active.get('active_entity_recursive') else ''}",
            visible,
        ]

    def close(self) -> None:
        """Stop the reading threads, kill the session and close the HTTP client."""
        self.puller.close()
        self.session.close()
