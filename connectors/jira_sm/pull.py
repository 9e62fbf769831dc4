"""Incremental pull by ``updated``: one prefetched stream, or a backfill in parallel windows.

Every query is ``(jql) AND updated >= since [AND updated < until] ORDER BY
updated ASC, key ASC``. A stream starts at the cursor's watermark minus the
overlap and skips the ``(key, updated)`` pairs the cursor says were
delivered; each page is yielded with the cursor after it, which never goes
past a record not yet yielded (the order is ascending).

A first sync with ``backfill_from`` splits ``[backfill_from, now)`` into
disjoint windows pulled concurrently (:func:`connectors.windows.pull_windows`);
each page then carries the windows' *safe* cursor.

A record that fails mapping (:class:`InputError`) is not dropped and does
not hold back the records after it: it goes in the batch's ``rejected``
with its error, which the core keeps (``core.loop.rejects``) until a later
version of the record maps.

qloop's own nonconformity tickets are left out by the JQL (their
``qloop-nonconformity`` label); one that slips past it (created before that
label existed, or relabelled) is recognised by its dedup label, skipped
without any further call and counted in the batch's ``skipped_own``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.cursor import Watermark, to_ms
from connectors.jira_sm.issues import IssueReader, parse_updated
from connectors.jira_sm.options import JiraOptions
from connectors.jira_sm.search import DateFormat, scope_jql, search_pages, window_jql
from connectors.jira_sm.tickets import is_own
from connectors.windows import prefetch, pull_windows
from core.errors import FatalError, InputError
from core.records import IncidentRecord, PulledBatch, Rejected

OWN: Literal["own"] = "own"
Item = tuple[str, int, IncidentRecord | InputError | Literal["own"]]
"""One issue of a page: key, ``updated`` in epoch ms, its record, why it failed, or
:data:`OWN` (qloop's own ticket, skipped)."""


def _file(
    key: str,
    ms: int,
    result: IncidentRecord | InputError | Literal["own"],
    records: list[IncidentRecord],
    rejected: list[Rejected],
) -> int:
    """Put one item in ``records`` or ``rejected``; 1 when it is qloop's own ticket."""
    if isinstance(result, InputError):
        rejected.append(_rejected(key, ms, result))
    elif isinstance(result, IncidentRecord):
        records.append(result)
    return 1 if result == OWN else 0


def _rejected(key: str, ms: int, exc: InputError) -> Rejected:
    updated = datetime.fromtimestamp(ms / 1000, UTC) if ms else None
    return Rejected.of(key, exc, updated)


@dataclass(frozen=True)
class Puller:
    """Pulls one source's incidents (see module docstring)."""

    name: str
    client: JiraClient
    reader: IssueReader
    opts: JiraOptions
    clock: Callable[[], datetime]
    fields: list[str]
    expand: str | None = "changelog"

    def date_format(self) -> DateFormat:
        """Epoch ms literals, or the profile zone read from ``/myself``."""
        if self.opts.timezone_mode == "epoch":
            return DateFormat()
        zone = self.client.myself().get("timeZone")
        try:
            return DateFormat(ZoneInfo(str(zone)))
        except (ZoneInfoNotFoundError, ValueError):
            msg = (
                f"{self.name}: GET /rest/api/3/myself gave time zone {zone!r}, which is not an "
                "IANA zone; set timezone_mode: epoch"
            )
            raise FatalError(msg, connector=self.name) from None

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        mark = Watermark.decode(cursor, self.opts.overlap_s, f"sources.{self.name}")
        fmt = self.date_format()
        if mark.updated_ms is None and self.opts.backfill_from is not None:
            yield from self._backfill(fmt)
        else:
            yield from self._stream(mark, fmt)

    def count_in_scope(self) -> int:
        """Jira's approximate count of what a first sync reads (same JQL, no window end)."""
        fmt = self.date_format()
        lo = fmt.floor(self.opts.backfill_from) if self.opts.backfill_from else None
        return self.client.approximate_count(scope_jql(self.opts.jql, fmt, lo))

    def _items(self, issues: list[dict[str, Any]], skip: Watermark | None) -> list[Item]:
        keyed: list[tuple[str, int, dict[str, Any], InputError | Literal["own"] | None]] = []
        for issue in issues:
            key = str(issue.get("key"))
            try:
                ms = to_ms(parse_updated(issue))
            except InputError as exc:
                keyed.append((key, 0, issue, exc))
                continue
            if skip is None or not skip.is_seen(key, ms):
                own = is_own((issue.get("fields") or {}).get("labels"))
                keyed.append((key, ms, issue, OWN if own else None))
        mapped = iter(self.reader.records([i for _, _, i, err in keyed if err is None]))
        return [(k, ms, err if err is not None else next(mapped)) for k, ms, _, err in keyed]

    def _pages(self, jql: str, skip: Watermark | None) -> Iterator[list[Item]]:
        for issues in search_pages(self.client, jql, self.fields, self.opts.page_size, self.expand):
            yield self._items(issues, skip)

    def _stream(self, mark: Watermark, fmt: DateFormat) -> Iterator[PulledBatch]:
        jql = window_jql(self.opts.jql, fmt, mark.since(), None)
        start = Watermark(mark.updated_ms, dict(mark.seen), mark.overlap_ms)
        for page in prefetch(self._pages(jql, start), depth=1):
            records: list[IncidentRecord] = []
            rejected: list[Rejected] = []
            own = 0
            for key, ms, result in page:
                if ms and mark.is_seen(key, ms):  # the same version twice in one run
                    continue
                own += _file(key, ms, result, records, rejected)
                if ms:
                    mark.add(key, ms)
            yield PulledBatch(records, mark.encode(), rejected, skipped_own=own)

    def _backfill(self, fmt: DateFormat) -> Iterator[PulledBatch]:
        assert self.opts.backfill_from is not None
        start = fmt.floor(self.opts.backfill_from)
        end = fmt.floor(self.clock())

        def fetch(lo: datetime, hi: datetime) -> Iterator[list[Item]]:
            return self._pages(window_jql(self.opts.jql, fmt, lo, hi), None)

        for page, safe in pull_windows(
            fetch,
            start,
            max(end, start),
            parts=self.opts.backfill_parts,
            workers=self.opts.backfill_workers,
        ):
            cursor = Watermark.at(fmt.floor(safe), self.opts.overlap_s).encode()
            records: list[IncidentRecord] = []
            rejected: list[Rejected] = []
            own = 0
            for key, ms, result in page:
                own += _file(key, ms, result, records, rejected)
            yield PulledBatch(records, cursor, rejected, skipped_own=own)
