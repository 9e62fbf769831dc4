"""Pulling tickets: the cursor, the incremental stream and the concurrent backfill.

The cursor is the kit's (:mod:`connectors.kit.cursor`) with a digest per
seen ticket::

    {"v": 1, "w": "2026-10-25T00:59:12.000+00:00", "seen": [["4821", 1792889952000]],
     "d": {"4821": "9f…"}}

``w`` is the watermark, the greatest ``date_mod`` read (UTC, first reading
of GLPI's naive value); ``seen`` holds each ticket read with a ``date_mod``
inside the overlap window ``[w − overlap, w]`` (epoch milliseconds) and
``d`` a digest of its raw record.

The next pull asks for ``date_mod ≥ w − overlap`` (converted to the
server's naive time so that it also holds across the end of DST, when
naive time goes back an hour) and then

* skips a row whose (id, ``date_mod``) is in ``seen`` — already delivered;
* re-reads a row in ``seen`` at the watermark second itself: GLPI's
  ``date_mod`` has one-second granularity, so a ticket read at second ``w``
  may have changed again within that second; it is delivered again only
  when its digest differs;
* delivers every other row, which covers rows committed late with a
  ``date_mod`` already passed (the overlap window's purpose).

So nothing is skipped and nothing is delivered twice. A first sync with
``backfill_from`` cuts ``[backfill_from, newest date_mod]`` into disjoint
windows pulled concurrently (:func:`connectors.windows.pull_windows`); a
window keeps the rows whose ``date_mod`` falls in it, so each ticket comes
exactly once. Its intermediate cursors are the safe cursors of the windows
(a resume may re-read, never skip); the last one carries the ``seen`` set.

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
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from connectors.glpi.convert import ServerClock, decode_text, shift_naive
from connectors.glpi.search import DATE_MOD, is_own_title, scan_all, search_page, window
from connectors.glpi.session import GlpiSession
from connectors.glpi.tickets import TicketReader, as_int, digest
from connectors.kit.cursor import SEEN_CAP, from_ms, to_ms
from connectors.kit.cursor import Cursor as KitCursor
from connectors.windows import prefetch, pull_windows
from core.errors import InputError, StateError
from core.mapping import map_incident
from core.records import Category, IncidentRecord, PulledBatch, Rejected, StatusChange
from core.timeutil import parse_instant

TRASHED = "Trashed"
"""The status a trashed ticket is delivered with (category ``cancelled``)."""


@dataclass
class Cursor:
    """GLPI's reading of the kit's cursor (:mod:`connectors.kit.cursor`).

    Ticket ids as ints, ``date_mod`` as epoch seconds, and with each ticket
    read inside the overlap window the digest of its raw record (the kit
    cursor's ``digests``): GLPI's ``date_mod`` has one-second granularity, so
    a change within the watermark's second is told by its digest. Encoding,
    the cap on ``seen`` and reading a hand-set instant are the kit's; a
    cursor stored by an earlier qloop (``"seen": {id: [epoch, digest]}``) is
    still read.
    """

    watermark: datetime | None = None
    seen: dict[int, tuple[int, str]] = field(default_factory=dict)

    def encode(self) -> str | None:
        if self.watermark is None:
            return None
        updated_ms = to_ms(self.watermark)
        kit = KitCursor(
            updated_ms,
            {str(k): e * 1000 for k, (e, _) in sorted(self.seen.items(), key=lambda i: i[1][0])},
            overlap_ms=updated_ms,  # pruned by prune() already; the kit keeps its cap
            digests={str(k): d for k, (_, d) in self.seen.items()},
        )
        return kit.encode()

    @classmethod
    def decode(cls, text: str | None, where: str) -> Cursor:
        """Read a cursor; a bare ISO instant (a hand-set cursor) is a watermark."""
        legacy = _legacy(text, where)
        if legacy is not None:
            return legacy
        kit = KitCursor.decode(text, 0, where)
        if kit.updated_ms is None:
            return cls()
        seen = {int(k): (ms // 1000, kit.digests.get(k, "")) for k, ms in kit.seen.items()}
        return cls(from_ms(kit.updated_ms), seen)

    def add(self, ticket_id: int, epoch: int, dig: str) -> None:
        self.seen[ticket_id] = (epoch, dig)
        instant = datetime.fromtimestamp(epoch, UTC)
        if self.watermark is None or instant > self.watermark:
            self.watermark = instant

    def prune(self, overlap_s: int) -> None:
        if self.watermark is None:
            return
        floor = int(self.watermark.timestamp()) - overlap_s
        kept = [(k, v) for k, v in self.seen.items() if v[0] >= floor]
        kept.sort(key=lambda item: item[1][0])
        self.seen = dict(kept[-SEEN_CAP:])


def _legacy(text: str | None, where: str) -> Cursor | None:
    """A cursor in the format of earlier releases (``seen`` an object), else None."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("seen"), dict):
        return None
    try:
        watermark = parse_instant(str(doc["w"])) if doc.get("w") else None
        seen = {int(k): (int(v[0]), str(v[1])) for k, v in doc["seen"].items()}
    except (ValueError, KeyError, TypeError, IndexError, InputError) as exc:
        msg = f"{where}: stored cursor is unreadable ({type(exc).__name__}: {exc})"
        raise StateError(msg) from None
    return Cursor(watermark, seen)


OWN: Literal["own"] = "own"
Read = tuple[int, int, str, IncidentRecord | Rejected | Literal["own"] | None]
"""(ticket id, date_mod epoch, digest, record to deliver, or why not, or :data:`OWN` for
qloop's own ticket, or None when unchanged)."""


def _split(
    read: IncidentRecord | Rejected | Literal["own"] | None,
    records: list[IncidentRecord],
    rejected: list[Rejected],
) -> int:
    """File one read in ``records`` or ``rejected``; 1 when it was qloop's own ticket."""
    if isinstance(read, Rejected):
        rejected.append(read)
    elif isinstance(read, IncidentRecord):
        records.append(read)
    return 1 if read == OWN else 0


def as_trashed(record: IncidentRecord, at: datetime) -> IncidentRecord:
    """A trashed ticket: ``cancelled`` from ``at`` (never before its last known change)."""
    last = record.history[-1].at if record.history else record.created_at
    when = max(at, last)
    history = (*record.history, StatusChange(when, Category.CANCELLED, TRASHED))
    return dataclasses.replace(record, status=TRASHED, category=Category.CANCELLED, history=history)


class Puller:
    """Turns search rows into mapped records, incrementally or as a backfill."""

    def __init__(
        self,
        name: str,
        session: GlpiSession,
        clock: ServerClock,
        mapping: Mapping[str, Any],
        page_size: int,
        overlap_s: int,
        detail_workers: int = 4,
    ) -> None:
        self.name = name
        self.session = session
        self.clock = clock
        self.mapping = mapping
        self.page_size = page_size
        self.overlap_s = overlap_s
        self.reader = TicketReader(session, clock)
        self._pool = ThreadPoolExecutor(max(detail_workers, 1), thread_name_prefix=f"glpi-{name}")

    def close(self) -> None:
        """Stop the detail-reading threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def read_all(
        self, jobs: list[Callable[[], Read]], rows: Sequence[Mapping[str, Any]] = ()
    ) -> list[Read]:
        """Run one page's ticket reads, in order, after reading ``rows``' details in bulk.

        ``rows`` are the page's search rows to be read (qloop's own left out):
        their logs and requesters come in a constant number of bulk calls
        (:meth:`TicketReader.prefetch`); what remains per ticket runs concurrently.
        """
        reading = [row for row in rows if not is_own_title(decode_text(row.get("name")))]
        if reading:
            self.reader.prefetch(reading)
        if len(jobs) <= 1:
            return [job() for job in jobs]
        return list(self._pool.map(lambda job: job(), jobs))

    def _map(self, raw: Mapping[str, Any]) -> IncidentRecord:
        try:
            record = map_incident(raw, self.mapping)
        except InputError as exc:
            msg = f"{self.name}: {exc}"
            raise InputError(msg, **exc.attrs) from exc
        if raw.get("is_deleted"):
            return as_trashed(record, record.updated_at)
        return record

    def own(self, row: Mapping[str, Any]) -> Read:
        """A row of qloop's own ticket: in the cursor like any other, never delivered."""
        return as_int(row.get("id")) or 0, self._epoch(row), OWN, OWN

    def job(
        self, row: Mapping[str, Any], previous: tuple[int, str] | None = None
    ) -> Callable[[], Read]:
        """How one search row is read: skipped when it is qloop's own ticket."""
        if is_own_title(decode_text(row.get("name"))):
            return partial(self.own, row)
        return partial(self.read, row, previous)

    def _epoch(self, row: Mapping[str, Any]) -> int:
        instant = self.clock.parse(row.get("date_mod"))
        if instant is None:
            msg = f"{self.name}: ticket {row.get('id')} has no date_mod"
            raise InputError(msg, record=str(row.get("id")), field="date_mod")
        return int(instant.timestamp())

    def read(self, row: Mapping[str, Any], previous: tuple[int, str] | None = None) -> Read:
        """Build and map one row; None as record when it equals ``previous`` (digest)."""
        raw = self.reader.build(row)
        raw["is_deleted"] = bool(as_int(row.get("is_deleted")))
        dig = digest(raw)
        ticket_id = int(raw["id"])
        epoch = self._epoch(row)
        if previous is not None and previous == (epoch, dig):
            return ticket_id, epoch, dig, None
        try:
            return ticket_id, epoch, dig, self._map(raw)
        except InputError as exc:
            updated = datetime.fromtimestamp(epoch, UTC)
            return ticket_id, epoch, dig, Rejected.of(str(ticket_id), exc, updated)

    # -- incremental ------------------------------------------------------------

    def incremental(self, start: Cursor) -> Iterator[PulledBatch]:
        """Tickets changed since the cursor's watermark − overlap, a batch per page."""
        since = None
        if start.watermark is not None:
            since = start.watermark - timedelta(seconds=self.overlap_s)
        lower = None if since is None else self.clock.lower_bound(since)
        hot = None if start.watermark is None else int(start.watermark.timestamp())
        known = dict(start.seen)
        self.reader.forget_users()

        def pages() -> Iterator[list[Read]]:
            for rows in scan_all(self.session, lower, None, self.page_size):
                out: list[Callable[[], Read]] = []
                todo: list[Mapping[str, Any]] = []
                for row in rows:
                    ticket_id = as_int(row.get("id"))
                    late = self.clock.parse_late(row.get("date_mod"))
                    if since is not None and (late is None or late < since):
                        continue  # below the window (the criterion's one-second margin)
                    epoch = self._epoch(row)
                    previous = known.get(ticket_id or -1)
                    if previous is not None and previous[0] == epoch:
                        if epoch != hot:
                            continue  # delivered before, and settled
                        out.append(self.job(row, previous))
                        todo.append(row)
                        continue
                    out.append(self.job(row))
                    todo.append(row)
                yield self.read_all(out, todo)

        state = Cursor(start.watermark, dict(start.seen))
        for page in prefetch(pages(), depth=1):
            before = state.encode()
            records: list[IncidentRecord] = []
            rejected: list[Rejected] = []
            own = 0
            for ticket_id, epoch, dig, record in page:
                state.add(ticket_id, epoch, dig)
                own += _split(record, records, rejected)
            state.prune(self.overlap_s)
            after = state.encode()
            if records or rejected or own or after != before:
                yield PulledBatch(records, after, rejected, skipped_own=own)

    # -- backfill ---------------------------------------------------------------

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

    def backfill(self, start: datetime, parts: int, workers: int) -> Iterator[PulledBatch]:
        """Every ticket modified since ``start``, as concurrent disjoint windows."""
        self.reader.forget_users()
        newest = self.newest()
        if newest is None:
            return
        end = newest + timedelta(seconds=1)
        if end <= start:
            yield from self.incremental(Cursor(start + timedelta(seconds=self.overlap_s)))
            return

        def fetch(lo: datetime, hi: datetime) -> Iterator[list[Read]]:
            lower = self.clock.lower_bound(lo)
            upper = shift_naive(self.clock.upper_bound(hi), 1)
            for rows in scan_all(self.session, lower, upper, self.page_size):
                todo = [
                    row for row in rows if lo <= datetime.fromtimestamp(self._epoch(row), UTC) < hi
                ]
                if todo:
                    yield self.read_all([self.job(row) for row in todo], todo)

        tail = Cursor()
        floor = int(newest.timestamp()) - self.overlap_s
        for page, safe in pull_windows(fetch, start, end, parts=parts, workers=workers):
            records: list[IncidentRecord] = []
            rejected: list[Rejected] = []
            own = 0
            for ticket_id, epoch, dig, record in page:
                if epoch >= floor:
                    tail.add(ticket_id, epoch, dig)
                own += _split(record, records, rejected)
            if safe >= end:
                tail.watermark = max(tail.watermark or newest, newest)
                tail.prune(self.overlap_s)
                cursor = tail.encode()
            else:
                cursor = Cursor(safe).encode()
            yield PulledBatch(records, cursor, rejected, skipped_own=own)
