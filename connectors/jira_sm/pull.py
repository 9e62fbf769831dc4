"""Incremental pull by ``updated`` on the kit's :class:`~connectors.kit.stream.Driver`.

Every query is ``(jql) AND updated >= since [AND updated < until] ORDER BY
updated ASC, key ASC``. The driver runs one prefetched stream from the
kit's cursor (watermark − overlap, the ``(key, updated)`` pairs already
delivered skipped), or, on a first sync with ``backfill_from``, disjoint
windows pulled concurrently, each page carrying the windows' *safe* cursor.
Instants are floored to what a JQL literal can express (:class:`DateFormat`).

Each sync first looks up the ids of JSM's SLA fields (``GET
/rest/api/3/field``, once) and asks for them in the search, so a page
carries its issues' SLA cycles; the changelog comes expanded. An issue then
needs a call of its own only when its changelog was truncated, when the SLA
fields could not be found (the per-issue SLA endpoint is the fallback), or
for ``contact: participants``.

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

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.issues import IssueReader, parse_updated, sla_field_ids
from connectors.jira_sm.options import JiraOptions
from connectors.jira_sm.search import DateFormat, scope_jql, window_jql
from connectors.jira_sm.tickets import is_own
from connectors.kit.stream import Driver, Raw
from core.errors import ConnectorError, FatalError, InputError
from core.records import IncidentRecord, PulledBatch

log = logging.getLogger(__name__)


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

    def sla_fields(self) -> tuple[str, ...] | None:
        """The ids of JSM's SLA fields (None: not looked up, or the lookup failed).

        None makes the reader fall back on the per-issue SLA endpoint.
        """
        if not self.reader.sla:
            return None
        try:
            return sla_field_ids(self.client.fields())
        except ConnectorError as exc:
            log.warning(
                "%s: GET /rest/api/3/field failed (%s): SLA cycles are read one request per "
                "issue this sync",
                self.name,
                exc,
            )
            return None

    def driver(self, fmt: DateFormat, reader: IssueReader, fields: list[str]) -> Driver:
        """The kit's driver over this sync's search (date format and fields known)."""
        body: dict[str, Any] = {"fields": fields, "maxResults": self.opts.page_size}
        if self.expand:
            body["expand"] = self.expand

        def fetch(since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
            jql = window_jql(self.opts.jql, fmt, since, until)
            return self.client.search({"jql": jql, **body})

        def convert(issues: list[Raw]) -> Sequence[IncidentRecord | InputError]:
            return reader.records(issues)

        return Driver(
            f"sources.{self.name}",
            fetch,
            _identify,
            convert,
            is_own=lambda issue: is_own((issue.get("fields") or {}).get("labels")),
            overlap_s=self.opts.overlap_s,
            backfill_from=self.opts.backfill_from,
            backfill_parts=self.opts.backfill_parts,
            backfill_workers=self.opts.backfill_workers,
            clock=self.clock,
            floor=fmt.floor,
            key_of=lambda issue: str(issue.get("key") or issue.get("id") or "?"),
            in_child=self.opts.pull_process,
        )

    def search_fields(self, sla_ids: Sequence[str] | None) -> list[str]:
        """The ``fields`` a search asks for: what the mapping reads, then the SLA fields."""
        return [*self.fields, *(f for f in sla_ids or () if f not in self.fields)]

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        fmt = self.date_format()
        sla_ids = self.sla_fields()
        reader = replace(self.reader, sla_fields=sla_ids)
        yield from self.driver(fmt, reader, self.search_fields(sla_ids)).pull(cursor)

    def count_in_scope(self) -> int:
        """Jira's approximate count of what a first sync reads (same JQL, no window end)."""
        fmt = self.date_format()
        lo = fmt.floor(self.opts.backfill_from) if self.opts.backfill_from else None
        return self.client.approximate_count(scope_jql(self.opts.jql, fmt, lo))


def _identify(issue: Raw) -> tuple[str, datetime]:
    return str(issue.get("key")), parse_updated(issue)
