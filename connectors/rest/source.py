"""The ``rest`` source: any ticketing tool with a JSON REST API, described in YAML alone.

Assembled from the source kit: :class:`~connectors.kit.options.Options`
over the schema's defaults, an auth scheme from :func:`~connectors.kit.auth.build_auth`,
a paginator from :func:`~connectors.kit.paging.build_paginator`, the one
:class:`~connectors.kit.stream.Driver` (cursor with overlap and dedup), the
source's ``mapping:`` (record paths, status and priority maps) through
:func:`core.mapping.map_incident`, and :class:`.tickets.TicketDesk` for
write-back. Nothing in it knows a particular tool.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx

from connectors.http import HttpService
from connectors.kit.auth import build_auth
from connectors.kit.options import Options
from connectors.kit.paths import read
from connectors.kit.stream import Driver, Raw
from connectors.rest.notes import NotesReader, reads_notes
from connectors.rest.options import OPTIONS_SCHEMA
from connectors.rest.reader import EPOCH, Reader, instant_of
from connectors.rest.tickets import TicketDesk
from core.connector import ConnectorContext
from core.errors import ConfigError, FatalError, InputError
from core.mapping import get_path, map_incident
from core.records import (
    IncidentRecord,
    PulledBatch,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)

PROBE_SHOWN = 10
"""Records of the first page ``qloop sources test`` shows mapped."""


def _first(raw: Raw, spec: Any) -> Any:
    for path in spec if isinstance(spec, list) else [spec]:
        value = get_path(raw, str(path))
        if value not in (None, ""):
            return value
    return None


class RestSource:
    """A declarative REST source (pull, count, probe, tickets); see the module docstring."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.where = f"sources.{name}"
        opts = Options(self.where, options, OPTIONS_SCHEMA)
        self.opts = opts
        self.base_url = opts.text("base_url").rstrip("/")
        self.mapping = dict(ctx.mapping)
        record = self.mapping.get("record") or {}
        for needed in ("external_id", "updated_at"):
            if not record.get(needed):
                msg = f"{self.where}.mapping.record.{needed}: a rest source needs it mapped"
                raise ConfigError(msg)
        self.id_spec, self.updated_spec = record["external_id"], record["updated_at"]
        self.http = HttpService(
            name,
            self.base_url,
            auth=build_auth(opts.raw("auth"), self.base_url, self.where),
            headers={"Accept": "application/json", **opts.raw("headers", {})},
            timeout=opts.number("timeout"),
            verify=opts.raw("verify_tls", True),
            rate=opts.number("rate"),
            sleep=ctx.sleep,
            transport=transport,
            redis_url=ctx.redis_url,
        )
        self.reader = Reader(self.http, opts.values, self.where)
        self.ordered = opts.section("list").flag("ordered", True)
        self.start = opts.instant("backfill_from") or EPOCH
        own = opts.section("own")
        self.own_path = own.optional_text("path")
        self.own_text = own.text("contains", "qloop:")
        windowed = self.reader.windowed and opts.has("backfill_from")
        self.driver = Driver(
            self.where,
            self._fetch,
            self._identify,
            self._convert,
            is_own=self._is_own,
            overlap_s=opts.seconds("overlap"),
            backfill_from=self.start if windowed else None,
            backfill_parts=opts.integer("backfill_parts"),
            backfill_workers=opts.integer("backfill_workers"),
            clock=ctx.clock,
            in_child=opts.flag("pull_process"),
        )
        ticket = opts.raw("ticket")
        self.desk = (
            TicketDesk(self.http, ticket, self.mapping, f"{self.where}.ticket", opts.raw("errors"))
            if ticket
            else None
        )
        self.notes = (
            NotesReader(self.http, ticket, self._tz(), f"{self.where}.ticket", opts.raw("errors"))
            if reads_notes(ticket)
            else None
        )

    # -- records ------------------------------------------------------------------------

    def _tz(self) -> ZoneInfo:
        return ZoneInfo(str(self.mapping.get("timezone") or "UTC"))

    def _identify(self, raw: Raw) -> tuple[str, datetime]:
        key = _first(raw, self.id_spec)
        if key in (None, ""):
            msg = f"{self.where}: a record without {self.id_spec!r}"
            raise InputError(msg, field="external_id")
        updated = _first(raw, self.updated_spec)
        try:
            return str(key), instant_of(updated, self._tz())
        except (InputError, ValueError, OverflowError):
            msg = f"{self.where}: record {key}: updated_at {updated!r} is not an instant"
            raise InputError(msg, record=str(key), field="updated_at") from None

    def _fetch(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        """Pages updated since ``since``; in a window, only records updated before ``until``
        (a tool's bounds may be inclusive: a record at ``until`` belongs to the next window)."""
        pages = self.reader.pages(since or self.start, until if self.reader.windowed else None)
        if until is None:
            yield from pages
            return
        for page in pages:
            yield [raw for raw in page if self._before(raw, until)]

    def _before(self, raw: Raw, until: datetime) -> bool:
        try:
            return self._identify(raw)[1] < until
        except InputError:
            return True  # kept: the driver rejects it, naming the record

    def _is_own(self, raw: Raw) -> bool:
        if self.own_path is None:
            return False
        return self.own_text in str(read(raw, self.own_path) or "")

    def _convert(self, raws: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        ids = [str(_first(r, self.id_spec)) for r in raws]
        out: list[IncidentRecord | InputError] = []
        for raw in self.reader.with_history(raws, ids):
            try:
                out.append(map_incident(raw, self.mapping))
            except InputError as exc:
                out.append(exc)
        return out

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Batches of incidents updated since ``cursor`` (from ``backfill_from`` at first).

        A list not in update order (``list.ordered: false``) keeps ``cursor``
        on every batch but the last: a pull cut short reads it all again
        rather than skip what a later page held.
        """
        batches = self.driver.pull(cursor)
        if self.ordered:
            yield from batches
            return
        held: PulledBatch | None = None
        for batch in batches:
            if held is not None:
                yield replace(held, cursor=cursor)
            held = batch
        if held is not None:
            yield held

    # -- first contact ------------------------------------------------------------------

    def count_in_scope(self) -> int | None:
        """The tool's count of a first sync's scope (None: no ``count`` configured)."""
        if not self.opts.has("count"):
            return None
        spec = dict(self.opts.raw("count"))
        response = self.reader.first_response(self.start, spec)
        return self.reader.count_of(
            response,
            spec.get("path"),
            spec.get("header"),
            spec.get("pattern"),
            f"{self.where}.count",
        )

    def probe(self) -> list[str]:
        """The tool's count in scope and the first page as the mapping reads it."""
        lines = [f"{self.base_url}: list call answered"]
        count = self.count_in_scope()
        if count is not None:
            lines.append(f"{count} records in scope (the tool's count)")
        page = next(iter(self.reader.pages(self.start)), [])
        lines.append(
            f"first page: {len(page)} records; the first {min(len(page), PROBE_SHOWN)} mapped:"
        )
        shown = page[:PROBE_SHOWN]
        for raw, result in zip(shown, self._convert(shown), strict=True):
            if isinstance(result, InputError):
                lines.append(f"  REJECTED {_first(raw, self.id_spec)}: {result}")
            else:
                own = " (qloop's own ticket: left out)" if self._is_own(raw) else ""
                lines.append(
                    f"  {result.key}: {result.status!r} -> {result.category}, "
                    f"{result.priority}, updated {result.updated_at.isoformat()}, "
                    f"{len(result.history)} status changes; {result.title[:60]}{own}"
                )
        return lines

    # -- tickets ------------------------------------------------------------------------

    def _desk(self) -> TicketDesk:
        if self.desk is None:
            msg = f"{self.where}: no ticket options: nonconformities cannot be pushed here"
            raise FatalError(msg, connector=self.name)
        return self.desk

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        return self._desk().create(ticket)

    def ticket_status(self, ref: str) -> TicketStatus:
        return self._desk().status(ref)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        """Comment a ticket qloop created, once per comment key (``ticket.comment``)."""
        return self._desk().comment(ref, comment)

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        """Comment and resolve a ticket qloop created (``ticket.resolve``; left when done)."""
        return self._desk().resolve(ref, comment)

    def close(self) -> None:
        self.http.close()


class RestNotesSource(RestSource):
    """A rest source whose ``ticket.comments`` call reads a ticket's comments back."""

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """Ticket ``ref``'s comments, oldest first (``ticket.comments``: one call)."""
        assert self.notes is not None
        return self.notes.notes(ref)


class RestNotesBatchSource(RestNotesSource):
    """The same, reading many tickets' comments per call (``ticket.comments_many``)."""

    def ticket_notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """:meth:`ticket_notes` of each of ``refs``: a call per ``max_refs`` tickets."""
        assert self.notes is not None
        return self.notes.notes_many(refs)


class StatusBatches:
    """Mixed into a rest source class whose ``ticket.status_many`` reads many states per call."""

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`ticket_status` of each of ``refs``: a call per ``max_refs`` tickets."""
        return cast("RestSource", self)._desk().statuses(refs)


_STATUS_BATCH_CLASSES: dict[str, type[RestSource]] = {}


def _with_status_batches(cls: type[RestSource]) -> type[RestSource]:
    """``cls`` with :class:`StatusBatches` mixed in (one class per base, made once)."""
    found = _STATUS_BATCH_CLASSES.get(cls.__name__)
    if found is None:
        found = type(cls.__name__ + "WithStatusBatches", (StatusBatches, cls), {})
        _STATUS_BATCH_CLASSES[cls.__name__] = found
    return found


def rest_source(
    name: str,
    options: Mapping[str, Any],
    ctx: ConnectorContext,
    transport: httpx.BaseTransport | None = None,
) -> RestSource:
    """The rest source ``options`` describe, with the comment reads its ``ticket`` block
    allows (none, one ticket per call, or a batch per call) and, with ``status_many``,
    state reads a batch per call."""
    ticket = options.get("ticket") if isinstance(options.get("ticket"), Mapping) else None
    cls: type[RestSource] = RestSource
    if reads_notes(ticket):
        cls = RestNotesBatchSource if (ticket or {}).get("comments_many") else RestNotesSource
    if (ticket or {}).get("status_many"):
        cls = _with_status_batches(cls)
    return cls(name, options, ctx, transport)
