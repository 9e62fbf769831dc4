"""The ``servicenow`` source: incidents in through the Table API, nonconformity tickets out.

Assembled from the source kit: :class:`~connectors.kit.options.Options`
over the schema's defaults, Basic or OAuth (password grant, refreshed)
from :mod:`connectors.kit.auth`, the one :class:`~connectors.kit.stream.Driver`
(cursor, stream, windowed backfill) over :class:`.reader.Reader`'s keyset
pages, and :class:`.tickets.TicketDesk` for write-back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

import mappings
from connectors.http import HttpService
from connectors.kit.auth import BasicAuth, OAuth2Auth
from connectors.kit.options import Options
from connectors.kit.stream import Driver, Raw
from connectors.servicenow.options import OPTIONS_SCHEMA
from connectors.servicenow.readback import ReadBack
from connectors.servicenow.reader import OWN_PREFIX, Reader, parse_sn_time, sn_time
from connectors.servicenow.tickets import TicketDesk
from core.connector import ConnectorContext
from core.errors import FatalError, InputError
from core.mapping import map_incident
from core.records import (
    IncidentRecord,
    PulledBatch,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)


def _message(response: httpx.Response) -> str | None:
    """ServiceNow's ``{"error": {"message", "detail"}}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("message", "detail") if error.get(k))[:300]
    return None


class ServiceNowSource:
    """ServiceNow (Table API) as a qloop source (pull, count, probe, tickets, read-back)."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        opts = Options(f"sources.{name}", options, OPTIONS_SCHEMA)
        self.opts = opts
        self.base_url = opts.text("base_url").rstrip("/")
        self.mapping = dict(ctx.mapping) if ctx.mapping else mappings.load("servicenow")
        auth = opts.section("auth")
        scheme: httpx.Auth
        if auth.has("client_id"):
            scheme = OAuth2Auth(
                f"{self.base_url}/oauth_token.do",
                auth.text("client_id"),
                auth.text("client_secret"),
                grant="password",
                username=auth.text("username"),
                password=auth.text("password"),
            )
        else:
            scheme = BasicAuth(auth.text("username"), auth.text("password"))
        self.http = HttpService(
            name,
            self.base_url,
            auth=scheme,
            headers={"Accept": "application/json"},
            timeout=opts.number("timeout"),
            verify=opts.raw("verify_tls", True),
            rate=opts.number("rate"),
            sleep=ctx.sleep,
            message_of=_message,
            transport=transport,
            redis_url=ctx.redis_url,
        )
        self.reader = Reader(
            self.http,
            opts.text("table"),
            opts.text("query"),
            opts.integer("page_size"),
            opts.flag("deletions"),
            opts.flag("sla"),
        )
        self.driver = Driver(
            f"sources.{name}",
            self.reader.pages,
            self._identify,
            self._convert,
            is_own=lambda raw: str(raw.get("correlation_id") or "").startswith(OWN_PREFIX),
            overlap_s=opts.seconds("overlap"),
            backfill_from=opts.instant("backfill_from"),
            backfill_parts=opts.integer("backfill_parts"),
            backfill_workers=opts.integer("backfill_workers"),
            clock=ctx.clock,
            in_child=opts.flag("pull_process"),
        )
        ticket = opts.section("ticket")
        fields = {**((self.mapping.get("ticket") or {}).get("servicenow_fields") or {})}
        fields.update(ticket.raw("fields", {}))
        self.ticketing = opts.has("ticket")
        self.desk = TicketDesk(
            self.http, self.base_url, ticket.text("table", "incident"), fields, self.mapping
        )
        self.readback = ReadBack(self.http, self.desk.table)

    def _identify(self, raw: Raw) -> tuple[str, datetime]:
        sys_id = str(raw.get("sys_id") or "")
        if not sys_id:
            msg = f"sources.{self.name}: a record without sys_id"
            raise InputError(msg, field="sys_id")
        return sys_id, parse_sn_time(str(raw.get("sys_updated_on")), f"{self.name} {sys_id}")

    def _convert(self, raws: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        out: list[IncidentRecord | InputError] = []
        for raw in self.reader.enrich(raws):
            try:
                out.append(map_incident(raw, self.mapping))
            except InputError as exc:
                out.append(exc)
        return out

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Batches of incidents updated (or deleted) since ``cursor``."""
        return self.driver.pull(cursor)

    def count_in_scope(self) -> int | None:
        """The tool's own count (``X-Total-Count``) of what a first sync reads."""
        since = self.opts.instant("backfill_from")
        window = self.reader.window(since, None)
        total = self.reader.count(self.reader.table, window)
        if total is None or not self.reader.deletions:
            return total
        deleted = f"tablename={self.reader.table}"
        if since is not None:
            deleted += f"^sys_created_on>={sn_time(since)}"
        gone = self.reader.count("sys_audit_delete", deleted)
        return None if gone is None else total + gone

    def probe(self) -> list[str]:
        """The account can read the table; its count in scope."""
        count = self.count_in_scope()
        return [
            f"{self.base_url}: table {self.reader.table} readable",
            f"{count} records in scope (every state; deletions included)",
        ]

    def _desk(self) -> TicketDesk:
        if not self.ticketing:
            msg = f"sources.{self.name}: no ticket options: nonconformities cannot be pushed here"
            raise FatalError(msg, connector=self.name)
        return self.desk

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        return self._desk().create(ticket)

    def ticket_status(self, ref: str) -> TicketStatus:
        return self._desk().status(ref)

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`ticket_status` of many tickets: one ``sys_idIN`` list read per 100."""
        return self._desk().statuses(refs)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        return self._desk().comment(ref, comment)

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        return self._desk().resolve(ref, comment)

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """Comments and work notes of ticket ``ref`` (``sys_journal_field``), oldest first."""
        return self.readback.notes(ref)

    def ticket_notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """:meth:`ticket_notes` of many tickets: one ``element_idIN`` journal query per 100."""
        return self.readback.notes_many(refs)

    def ticket_fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Values of fields ``names`` of ticket ``ref`` (not display values)."""
        return self.readback.fields(ref, names)

    def close(self) -> None:
        self.http.close()
