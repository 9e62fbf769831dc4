"""Pulling tickets on the kit's :class:`~connectors.kit.stream.Driver` and cursor.

The cursor is the kit's (:mod:`connectors.kit.cursor`) with a digest per
seen ticket::

    {"v": 1, "w": "2026-10-25T00:59:12.000+00:00", "seen": [["4821", 1792889952000]],
     "d": {"4821": "9f…"}}

``w`` is the watermark, the greatest ``date_mod`` read (UTC, first reading
of GLPI's naive value); ``seen`` holds each ticket read with a ``date_mod``
inside the overlap window ``[w − overlap, w]`` (epoch milliseconds) and
``d`` a digest of its search row. A cursor stored by an earlier release
(``"seen": {id: [epoch, digest]}``) is still read.

The next pull asks for ``date_mod ≥ w − overlap`` (converted to the
server's naive time so that it also holds across the end of DST, when
naive time goes back an hour) and then the driver

* skips a row whose (id, ``date_mod``) is in ``seen`` — already delivered;
* re-reads a row in ``seen`` at the watermark second itself: GLPI's
  ``date_mod`` has one-second granularity, so a ticket read at second ``w``
  may have changed again within that second; it is delivered again only
  when its digest differs;
* delivers every other row, which covers rows committed late with a
  ``date_mod`` already passed (the overlap window's purpose).

So nothing is skipped and nothing is delivered twice. A first sync with
``backfill_from`` cuts ``[backfill_from, newest date_mod]`` into disjoint
windows pulled concurrently (the end is GLPI's own newest ``date_mod``, not
qloop's clock); a window keeps the rows whose ``date_mod`` falls in it, so
each ticket comes exactly once. Its intermediate cursors are the safe
cursors of the windows (a resume may re-read, never skip); the last one
carries the ``seen`` set.

A ticket that fails mapping goes in its batch's ``rejected`` with the error
(the core keeps it until a later version maps) and the pull goes on; it is
in ``seen`` like any other, so the same version is not rejected again.

Every search states its scope (:data:`connectors.glpi.search.SCOPE`: every
status, none of qloop's own tickets) and reads the trash beside the live
tickets (:func:`connectors.glpi.search.scan_all`). A trashed ticket is
delivered as ``cancelled`` (SPEC §11) from the instant it was trashed (its
``date_mod``). A row whose title carries qloop's dedup marker is one of
qloop's nonconformity tickets that slipped past the search: it is skipped
(counted in the batch's ``skipped_own``), never read or delivered.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.glpi.convert import ServerClock, decode_text, shift_naive
from connectors.glpi.options import GlpiOptions
from connectors.glpi.search import DATE_MOD, is_own_title, scan_all, search_page, window
from connectors.glpi.session import GlpiSession
from connectors.glpi.tickets import TicketReader, as_int, digest
from connectors.kit.stream import Driver, Raw
from core.errors import InputError
from core.mapping import map_incident
from core.records import Category, IncidentRecord, PulledBatch, StatusChange

TRASHED = "Trashed"
"""The status a trashed ticket is delivered with (category ``cancelled``)."""


def as_trashed(record: IncidentRecord, at: datetime) -> IncidentRecord:
    """A trashed ticket: ``cancelled`` from ``at`` (never before its last known change)."""
    last = record.history[-1].at if record.history else record.created_at
    when = max(at, last)
    history = (*record.history, StatusChange(when, Category.CANCELLED, TRASHED))
    return dataclasses.replace(record, status=TRASHED, category=Category.CANCELLED, history=history)


class Puller:
    """GLPI's parts of the kit's driver: the search pages, and search rows to mapped records."""

    def __init__(
        self,
        name: str,
        session: GlpiSession,
        clock: ServerClock,
        mapping: Mapping[str, Any],
        opts: GlpiOptions,
    ) -> None:
        self.name = name
        self.session = session
        self.clock = clock
        self.mapping = mapping
        self.opts = opts
        self.reader = TicketReader(session, clock)
        self._pool = self._new_pool()
        self._pool_pid = os.getpid()
        self.driver = Driver(
            f"sources.{name}",
            self.fetch,
            self.identify,
            self.convert,
            is_own=lambda row: is_own_title(decode_text(row.get("name"))),
            overlap_s=opts.overlap_s,
            backfill_from=opts.backfill_from,
            backfill_parts=opts.backfill_parts,
            backfill_workers=opts.backfill_workers,
            key_of=lambda row: str(row.get("id", "?")),
            digest=digest,
            backfill_until=self.end,
            in_child=opts.pull_process,
        )

    def _new_pool(self) -> ThreadPoolExecutor:
        workers = max(self.opts.detail_workers, 1)
        return ThreadPoolExecutor(workers, thread_name_prefix=f"glpi-{self.name}")

    @property
    def pool(self) -> ThreadPoolExecutor:
        """This process's detail-reading threads: a forked pull child (``pull_process``)
        makes its own, since the parent's threads do not exist in it (work handed to
        them would never run)."""
        if self._pool_pid != os.getpid():
            self._pool, self._pool_pid = self._new_pool(), os.getpid()
        return self._pool

    def close(self) -> None:
        """Stop the detail-reading threads."""
        if self._pool_pid == os.getpid():
            self._pool.shutdown(wait=True, cancel_futures=True)

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """The driver's pull, contact details read afresh."""
        self.reader.forget_users()
        yield from self.driver.pull(cursor)

    # -- the driver's functions ----------------------------------------------------

    def fetch(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        """Live and trashed rows with ``since <= date_mod < until``, oldest first, in pages.

        The naive criteria reach a little beyond the bounds (the repeated
        hour at the end of DST, GLPI's strict comparisons); the rows outside
        are left out here: in a window by their first reading (so that
        windows are disjoint), in a stream by their latest one (so that no
        row is lost).
        """
        lower = None if since is None else self.clock.lower_bound(since)
        upper = None if until is None else shift_naive(self.clock.upper_bound(until), 1)
        for rows in scan_all(self.session, lower, upper, self.opts.page_size):
            inside = [row for row in rows if self._inside(row, since, until)]
            if inside:
                yield inside

    def _inside(self, row: Raw, since: datetime | None, until: datetime | None) -> bool:
        if until is not None:  # a backfill window
            at = self.clock.parse(row.get("date_mod"))
            return at is None or ((since is None or since <= at) and at < until)
        if since is None:
            return True
        late = self.clock.parse_late(row.get("date_mod"))
        return late is not None and late >= since

    def identify(self, row: Raw) -> tuple[str, datetime]:
        """The ticket id and its ``date_mod`` (whole seconds, first reading)."""
        instant = self.clock.parse(row.get("date_mod"))
        ticket_id = as_int(row.get("id"))
        if instant is None or ticket_id is None:
            what = "date_mod" if ticket_id is not None else "id"
            msg = f"{self.name}: ticket {row.get('id')} has no {what}"
            raise InputError(msg, record=str(row.get("id")), field=what)
        return str(ticket_id), datetime.fromtimestamp(int(instant.timestamp()), UTC)

    def convert(self, rows: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        """One page's rows as records: their logs and requesters read in bulk first
        (:meth:`TicketReader.prefetch`), what remains per ticket concurrently."""
        self.reader.prefetch(rows)
        if len(rows) <= 1:
            return [self._record(row) for row in rows]
        return list(self.pool.map(self._record, rows))

    def _record(self, row: Mapping[str, Any]) -> IncidentRecord | InputError:
        raw = self.reader.build(row)
        raw["is_deleted"] = bool(as_int(row.get("is_deleted")))
        try:
            record = map_incident(raw, self.mapping)
        except InputError as exc:
            return InputError(f"{self.name}: {exc}", **exc.attrs)
        if raw["is_deleted"]:
            return as_trashed(record, record.updated_at)
        return record

    def newest(self) -> datetime | None:
        """The greatest ``date_mod`` in scope, live or trashed (one-row searches, descending)."""
        found = []
        for trash in (False, True):
            page = search_page(
                self.session, window(None, None), 0, 1, sort=DATE_MOD, order="DESC", trash=trash
            )
            if page.rows:
                found.append(self.clock.parse(page.rows[0].get("date_mod")))
        return max((f for f in found if f is not None), default=None)

    def end(self) -> datetime | None:
        """Where a backfill ends: just after GLPI's newest ``date_mod`` (None: no ticket)."""
        newest = self.newest()
        return None if newest is None else newest + timedelta(seconds=1)
