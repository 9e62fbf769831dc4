"""Reading incidents from the Table API: keyset pages, deletions, bulk enrichment per page.

**Paging.** Offset paging over a table that changes while it is read skips
records (a record updated between two pages moves to the end of the
``sys_updated_on`` order and every later record shifts one place back). So
each page is asked by *keyset*: ``sys_updated_on>W ORDER BY sys_updated_on,
sys_id`` after the last record ``(W, S)`` read, first finishing the records
of the same second (``sys_updated_on=W^sys_id>S ORDER BY sys_id``). A page
shorter than the limit is not the end (the limit applies before access
rules): only an empty page is. The kit's ``KeysetQueryPaginator`` does
this, under the one ``LoopGuard``.

**Time.** ``sysparm_display_value=false``: values, not the localised
display values, and instants in UTC ``YYYY-MM-DD HH:MM:SS`` whatever the
API user's profile zone; plain date literals in ``sysparm_query`` are read
as UTC too (``javascript:gs.dateGenerate`` would use the profile zone and
is never sent).

**Enrichment.** For a whole page at once: state history from ``sys_audit``
(``fieldname=state``, ``documentkeyIN…``), callers from ``sys_user``
(``sys_idIN…``), SLAs from ``task_sla`` (``taskIN…``): a handful of calls
per page, never a call per incident.

**Deletions.** ``sys_audit_delete`` rows of the table (the deleted record's
XML in ``payload``) are merged into the same ascending stream, as records
in state ``deleted`` (mapped to ``cancelled``) updated at the deletion.
"""

from __future__ import annotations

import heapq
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.http import HttpService
from connectors.kit.paging import (
    KeysetQueryPaginator,
    LinkHeaderPaginator,
    LoopGuard,
    PageRequest,
)
from connectors.kit.stream import Raw, paginate
from core.errors import InputError

FMT = "%Y-%m-%d %H:%M:%S"
OWN_PREFIX = "qloop:"
"""Every correlation_id qloop writes starts so; the scope query leaves them out."""
IN_CHUNK = 100
"""Ids per ``…IN`` condition (the URL stays well under instance limits)."""
DELETED = "deleted"


def sn_time(at: datetime) -> str:
    """An instant as a ServiceNow UTC literal (whole seconds)."""
    return at.astimezone(UTC).strftime(FMT)


def parse_sn_time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text, FMT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        msg = f"{where}: {text!r} is not a ServiceNow UTC instant (YYYY-MM-DD HH:MM:SS)"
        raise InputError(msg, field="sys_updated_on") from None


def payload_record(payload: str, table: str) -> dict[str, str]:
    """The fields of a deleted record from ``sys_audit_delete.payload`` (its XML)."""
    try:
        root = ET.fromstring(payload)  # the instance's own XML
    except ET.ParseError as exc:
        msg = f"sys_audit_delete payload is not XML: {exc}"
        raise InputError(msg, field="payload") from None
    node = root.find(table)
    node = node if node is not None else (root[0] if len(root) else root)
    return {child.tag: child.text or "" for child in node}


class Reader:
    def __init__(
        self, http: HttpService, table: str, query: str, page_size: int, deletions: bool, sla: bool
    ) -> None:
        self.http, self.table, self.query = http, table, query
        self.page_size, self.deletions, self.sla = page_size, deletions, sla

    # -- queries -------------------------------------------------------------------------

    def scope(self) -> str:
        """The configured query and the own-ticket filter (never an ORDER BY)."""
        own = f"correlation_idISEMPTY^ORcorrelation_idNOT LIKE{OWN_PREFIX}"
        return "^".join(p for p in (self.query.strip("^"), own) if p)

    def all_rows(self, table: str, query: str, fields: str) -> Iterator[Raw]:
        """Every row of a query, following the ``Link`` header (tables that only grow)."""

        def send(req: PageRequest) -> Any:
            url, params = req.target()
            return self.http.request("GET", url, params=params)

        first = PageRequest(
            f"/api/now/table/{table}",
            {
                "sysparm_query": query,
                "sysparm_fields": fields,
                "sysparm_limit": 1000,
                "sysparm_display_value": "false",
                "sysparm_no_count": "true",
            },
        )
        guard = LoopGuard(f"{self.http.name}: {table}")
        for page in paginate(
            send, first, LinkHeaderPaginator(), lambda r: list(r.json().get("result") or []), guard
        ):
            yield from page

    def count(self, table: str, query: str) -> int | None:
        response = self.http.request(
            "GET",
            f"/api/now/table/{table}",
            params={
                "sysparm_query": query,
                "sysparm_limit": 1,
                "sysparm_fields": "sys_id",
                "sysparm_display_value": "false",
            },
        )
        total = response.headers.get("X-Total-Count")
        return int(total) if total is not None and total.isdigit() else None

    # -- the stream ---------------------------------------------------------------------

    def window(self, since: datetime | None, until: datetime | None) -> str:
        parts = [self.scope()]
        if since is not None:
            parts.append(f"sys_updated_on>={sn_time(since)}")
        if until is not None:
            parts.append(f"sys_updated_on<{sn_time(until)}")
        return "^".join(parts)

    def incidents(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        """Pages of the window by keyset (see the module docstring), oldest first."""
        path = f"/api/now/table/{self.table}"

        def send(req: PageRequest) -> Any:
            url, params = req.target()
            return self.http.request("GET", url, params=params)

        def records_of(response: httpx.Response) -> list[Raw]:
            return list((self.http.json_of(response, "GET", path) or {}).get("result") or [])

        first = PageRequest(
            path,
            {
                "sysparm_query": "",  # the paginator writes it
                "sysparm_display_value": "false",
                "sysparm_exclude_reference_link": "true",
                "sysparm_no_count": "true",
                "sysparm_limit": self.page_size,
            },
        )
        keyset = KeysetQueryPaginator(self.window(since, until))
        guard = LoopGuard(f"{self.http.name}: {self.table}")
        yield from paginate(send, first, keyset, records_of, guard)

    def deleted(self, since: datetime | None, until: datetime | None) -> Iterator[Raw]:
        query = f"tablename={self.table}"
        if since is not None:
            query += f"^sys_created_on>={sn_time(since)}"
        if until is not None:
            query += f"^sys_created_on<{sn_time(until)}"
        fields = "sys_id,documentkey,payload,sys_created_on"
        for row in self.all_rows("sys_audit_delete", query + "^ORDERBYsys_created_on", fields):
            try:
                doc = payload_record(str(row.get("payload") or ""), self.table)
            except InputError:
                doc = {}
            doc.update(
                sys_id=str(row["documentkey"]),
                state=DELETED,
                sys_updated_on=str(row["sys_created_on"]),
            )
            if not str(doc.get("correlation_id") or "").startswith(OWN_PREFIX):
                yield doc

    def pages(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        """Incidents and deletions of the window merged in ascending ``sys_updated_on``."""
        if not self.deletions:
            yield from self.incidents(since, until)
            return
        rows = itertools.chain.from_iterable(self.incidents(since, until))
        merged = heapq.merge(
            rows, self.deleted(since, until), key=lambda r: str(r.get("sys_updated_on") or "")
        )
        while page := list(itertools.islice(merged, self.page_size)):
            yield page

    # -- enrichment per page ------------------------------------------------------------

    def _by_ids(
        self, table: str, field: str, ids: Iterable[str], fields: str, extra: str = ""
    ) -> Iterator[Raw]:
        unique = sorted({i for i in ids if i})
        for i in range(0, len(unique), IN_CHUNK):
            chunk = ",".join(unique[i : i + IN_CHUNK])
            yield from self.all_rows(table, f"{extra}{field}IN{chunk}", fields)

    def enrich(self, rows: list[Raw]) -> list[Raw]:
        """Each row with ``history``, ``caller`` and ``sla`` read in bulk for the whole page."""
        ids = [str(r["sys_id"]) for r in rows if r.get("state") != DELETED]
        audits: dict[str, list[Raw]] = {}
        for a in self._by_ids(
            "sys_audit",
            "documentkey",
            ids,
            "documentkey,oldvalue,newvalue,sys_created_on",
            f"tablename={self.table}^fieldname=state^",
        ):
            audits.setdefault(str(a["documentkey"]), []).append(a)
        users = {
            str(u["sys_id"]): u
            for u in self._by_ids(
                "sys_user",
                "sys_id",
                (str(r.get("caller_id") or "") for r in rows),
                "sys_id,name,phone,mobile_phone,email",
            )
        }
        slas: dict[str, list[Raw]] = {}
        if self.sla:
            for s in self._by_ids(
                "task_sla", "task", ids, "task,sla.name,stage,has_breached,planned_end_time"
            ):
                slas.setdefault(str(s["task"]), []).append(s)
        return [self._one(r, audits, users, slas) for r in rows]

    @staticmethod
    def _one(
        row: Raw, audits: dict[str, list[Raw]], users: dict[str, Raw], slas: dict[str, list[Raw]]
    ) -> Raw:
        sys_id = str(row["sys_id"])
        changes = sorted(audits.get(sys_id, []), key=lambda a: str(a["sys_created_on"]))
        first = next((str(a["oldvalue"]) for a in changes if a.get("oldvalue")), None)
        initial = first or (str(changes[0]["newvalue"]) if changes else str(row.get("state")))
        history = [{"at": row.get("opened_at") or row.get("sys_created_on"), "state": initial}]
        history += [
            {"at": a["sys_created_on"], "state": a["newvalue"]}
            for a in changes
            if a.get("oldvalue")
        ]
        if row.get("state") == DELETED:
            history.append({"at": row["sys_updated_on"], "state": DELETED})
        own = slas.get(sys_id, [])
        return {
            **row,
            "history": history,
            "caller": users.get(str(row.get("caller_id") or ""), {}),
            "sla": {
                "slas": [
                    {
                        "name": s.get("sla.name"),
                        "stage": s.get("stage"),
                        "has_breached": s.get("has_breached") == "true",
                        "planned_end_time": s.get("planned_end_time"),
                    }
                    for s in own
                ],
                "breached": any(s.get("has_breached") == "true" for s in own) if own else None,
            },
        }
