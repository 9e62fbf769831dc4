"""The one pull driver: pages in, batches with a safe cursor out.

A source gives the driver four small functions:

* ``fetch(since, until)``: pages of raw records updated in ``[since, until)``
  (None: unbounded), oldest first, whole pages at a time;
* ``identify(raw)``: the record's key and ``updated`` (aware), or an
  :class:`InputError` when unreadable;
* ``is_own(raw)``: whether it is qloop's own ticket (skipped, counted);
* ``convert(raws)``: one page of raw records to incident records (or the
  :class:`InputError` of each that fails). It gets the *whole page*, so a
  source enriches it with bulk calls (histories, contacts, SLAs for every
  record of the page at once), never a call per record.

:meth:`Driver.pull` then runs an incremental stream from the cursor (the next
pages fetched while the current one is converted and stored), or, on a first
sync with ``backfill_from``, a backfill in disjoint windows pulled
concurrently (:func:`connectors.windows.pull_windows`), each page carrying the
windows' safe cursor. With ``in_child`` either runs in a forked child process
that ships the converted batches to this one (:mod:`connectors.kit.child`).
:func:`paginate` walks a paginator with the one loop guard.

A tool whose ``updated`` is too coarse to tell two versions apart (GLPI's
one-second ``date_mod``) gives ``digest``: the cursor keeps a digest per
record near the watermark (:class:`~connectors.kit.cursor.Cursor`), a
record seen at the watermark's own instant is delivered again when its
digest changed, and a backfill's last cursor is its newest record with
those near it (so a change within that instant is still seen). A tool that
knows its newest ``updated`` gives ``backfill_until`` so that a backfill
ends there rather than at qloop's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from connectors.kit import wire
from connectors.kit.child import in_child
from connectors.kit.cursor import Cursor, to_ms
from connectors.kit.paging import LoopGuard, PageRequest, Paginator
from connectors.windows import prefetch, pull_windows
from core.errors import InputError
from core.records import IncidentRecord, PulledBatch, Rejected

Raw = dict[str, Any]
OWN: Literal["own"] = "own"
Result = IncidentRecord | InputError | Literal["own"]
Item = tuple[str, int, Result, str | None]
"""One record of a page: its key, ``updated`` in epoch ms (0: unreadable), what it became,
its digest (None without ``Driver.digest``)."""


def paginate(
    send: Callable[[PageRequest], httpx.Response],
    first: PageRequest,
    paginator: Paginator,
    records_of: Callable[[httpx.Response], list[Raw]],
    guard: LoopGuard,
) -> Iterator[list[Raw]]:
    """Pages of records from ``first`` on, as ``paginator`` says, guarded by ``guard``."""
    request: PageRequest | None = paginator.first(first)
    while request is not None:
        guard.check(request)
        response = send(request)
        records = records_of(response)
        yield records
        request = paginator.advance(request, response, records)


@dataclass(frozen=True)
class Driver:
    """Pulls one source (see the module docstring)."""

    where: str
    fetch: Callable[[datetime | None, datetime | None], Iterator[list[Raw]]]
    identify: Callable[[Raw], tuple[str, datetime]]
    convert: Callable[[list[Raw]], Sequence[IncidentRecord | InputError]]
    is_own: Callable[[Raw], bool] = lambda raw: False
    overlap_s: int = 120
    backfill_from: datetime | None = None
    backfill_parts: int = 8
    backfill_workers: int = 4
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    floor: Callable[[datetime], datetime] = lambda at: at.replace(microsecond=0)
    """Rounds an instant down to what the tool's filter can express (seconds, minutes)."""
    key_of: Callable[[Raw], str] = lambda raw: str(raw.get("id", "?"))
    """The key a record whose ``identify`` failed is rejected under (its ``id`` by default)."""
    digest: Callable[[Raw], str] | None = None
    """A digest of a raw record, for a tool whose ``updated`` is too coarse (module docstring)."""
    backfill_until: Callable[[], datetime | None] | None = None
    """The end of a backfill, asked once (default: ``clock``); None: nothing to pull yet."""
    in_child: bool = False
    """Fetch and convert in a forked child process, this one only storing
    (:mod:`connectors.kit.child`)."""

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        if self.in_child:
            return in_child(lambda: self._pull(cursor), self.where, wire.pack, wire.unpack)
        return self._pull(cursor)

    def _pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        mark = Cursor.decode(cursor, self.overlap_s, self.where)
        if mark.updated_ms is None and self.backfill_from is not None:
            yield from self._backfill(self.backfill_from)
        else:
            yield from self._stream(mark)

    def _items(self, raws: list[Raw], skip: Cursor | None) -> list[Item]:
        keyed: list[tuple[str, int, Raw, Result | None, str | None]] = []
        for raw in raws:
            try:
                key, updated = self.identify(raw)
                ms = to_ms(updated)
            except InputError as exc:
                keyed.append((self.key_of(raw), 0, raw, exc, None))
                continue
            digest = None if self.digest is None else self.digest(raw)
            if skip is not None and skip.is_seen(key, ms, digest):
                continue
            keyed.append((key, ms, raw, OWN if self.is_own(raw) else None, digest))
        todo = [raw for _, _, raw, done, _ in keyed if done is None]
        mapped = iter(self.convert(todo) if todo else ())
        return [
            (k, ms, done if done is not None else next(mapped), d) for k, ms, _, done, d in keyed
        ]

    def _pages(
        self, since: datetime | None, until: datetime | None, skip: Cursor | None
    ) -> Iterator[list[Item]]:
        for raws in self.fetch(since, until):
            yield self._items(raws, skip)

    @staticmethod
    def _batch(page: list[Item], cursor: str | None) -> PulledBatch:
        records: list[IncidentRecord] = []
        rejected: list[Rejected] = []
        own = 0
        for key, ms, result, _ in page:
            if isinstance(result, InputError):
                at = datetime.fromtimestamp(ms / 1000, UTC) if ms else None
                rejected.append(Rejected.of(key, result, at))
            elif isinstance(result, IncidentRecord):
                records.append(result)
            else:
                own += 1
        return PulledBatch(records, cursor, rejected, skipped_own=own)

    def _stream(self, mark: Cursor) -> Iterator[PulledBatch]:
        since, skip = mark.since(), mark.copy()
        # the thread only fetches: the next page's request leaves as soon as this one is
        # read, and this page is converted and stored meanwhile (not before it leaves)
        for raws in prefetch(self.fetch(since, None), depth=1):
            fresh = []
            for key, ms, result, digest in self._items(raws, skip):
                if ms and mark.is_seen(key, ms, digest):  # the same version twice in one run
                    continue
                fresh.append((key, ms, result, digest))
                if ms:
                    mark.add(key, ms, digest)
            yield self._batch(fresh, mark.encode())

    def _backfill(self, start_at: datetime) -> Iterator[PulledBatch]:
        start = self.floor(start_at)
        until = self.clock() if self.backfill_until is None else self.backfill_until()
        if until is None:
            return
        end = max(self.floor(until), start)
        tail = Cursor(overlap_ms=self.overlap_s * 1000) if self.digest is not None else None
        near_end = to_ms(end) - self.overlap_s * 1000  # what the last cursor may keep

        def fetch(lo: datetime, hi: datetime) -> Iterator[list[Item]]:
            return self._pages(lo, hi, None)

        for page, safe in pull_windows(
            fetch, start, end, parts=self.backfill_parts, workers=self.backfill_workers
        ):
            if tail is not None:
                for key, ms, _, digest in page:
                    if ms >= near_end:
                        tail.add(key, ms, digest)
            cursor = Cursor.at(self.floor(safe), self.overlap_s).encode()
            if tail is not None and safe >= end:
                cursor = tail.encode() or cursor  # the newest record, for its instant's digests
            yield self._batch(page, cursor)
