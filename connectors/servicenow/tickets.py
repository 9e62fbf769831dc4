"""Nonconformity tickets in ServiceNow: created once per dedup key, followed to closure.

The dedup key goes in ``correlation_id`` (made for an external system's
id; 100 characters, a longer key is replaced by ``qloop:`` and its
SHA-256). Before creating, ``correlation_id=<key>`` is looked up, and after
a create whose answer was lost (5xx, timeout) it is looked up again before
anything is retried, so a ticket is never created twice. The status is
``state`` read with ``GET /api/now/table/{table}/{sys_id}``; many tickets'
states (the track step) are one list read per 100 tickets
(``sysparm_query=sys_idIN…^ORDERBYsys_id``, the same fields and values, not
display values, paged by the ``Link`` header): a row seen twice across pages
is kept once, a row of a ticket not asked for is dropped, and a ticket the
list does not return (deleted, hidden by an ACL) is read alone, so it fails
exactly as the single read does. A comment is a
work note whose last line carries its marker; the journal
(``sys_journal_field``) is searched for the marker first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.http import HttpService
from connectors.servicenow.readback import table_rows
from connectors.servicenow.reader import OWN_PREFIX, parse_sn_time
from core.errors import ConnectorError, FatalError, QloopError
from core.records import Category, TicketComment, TicketRef, TicketRequest, TicketStatus

CORRELATION_MAX = 100
STATUS_FIELDS = "sys_id,state,resolved_at,closed_at"
IDS_PER_QUERY = 100
"""Tickets per status list read (``sysparm_query=sys_idIN…``): 32-character sys_ids keep
the URL near 4 KB, as the journal read's (:mod:`.readback`)."""
STATUS_PAGE = 100
"""Rows asked per page of a status list read (further pages by the ``Link`` header)."""
DONE = (Category.RESOLVED, Category.CLOSED, Category.CANCELLED)


def category_of(status_map: Mapping[Any, Any], state: str) -> Category | None:
    """The category ``status_map`` gives a raw state (keys compared as text)."""
    for key, value in status_map.items():
        if str(key).strip().casefold() == state.strip().casefold():
            return Category(str(value))
    return None


def correlation_id(dedup_key: str) -> str:
    if dedup_key.startswith(OWN_PREFIX) and len(dedup_key) <= CORRELATION_MAX:
        return dedup_key
    return OWN_PREFIX + hashlib.sha256(dedup_key.encode()).hexdigest()


class TicketDesk:
    def __init__(
        self,
        http: HttpService,
        base_url: str,
        table: str,
        fields: Mapping[str, Any],
        mapping: Mapping[str, Any],
    ) -> None:
        self.http, self.base_url, self.table = http, base_url.rstrip("/"), table
        self.fields, self.mapping = dict(fields), mapping

    def _path(self, sys_id: str = "") -> str:
        return f"/api/now/table/{self.table}" + (f"/{sys_id}" if sys_id else "")

    def _ref(self, sys_id: str) -> TicketRef:
        return TicketRef(sys_id, f"{self.base_url}/nav_to.do?uri={self.table}.do?sys_id={sys_id}")

    def find(self, dedup_key: str) -> TicketRef | None:
        body = self.http.get_json(
            self._path(),
            params={
                "sysparm_query": f"correlation_id={correlation_id(dedup_key)}",
                "sysparm_fields": "sys_id",
                "sysparm_limit": 1,
            },
        )
        found = (body or {}).get("result") or []
        return self._ref(str(found[0]["sys_id"])) if found else None

    def create(self, ticket: TicketRequest) -> TicketRef:
        existing = self.find(ticket.dedup_key)
        if existing is not None:
            return existing
        body = {
            **self.fields,
            "short_description": ticket.title[:160],
            "description": ticket.description,
            "correlation_id": correlation_id(ticket.dedup_key),
            "correlation_display": "qloop",
        }
        try:
            made = self.http.post_json(
                self._path(), body, params={"sysparm_exclude_reference_link": "true"}
            )
        except ConnectorError:
            again = self.find(ticket.dedup_key)  # the answer may be lost, not the ticket
            if again is not None:
                return again
            raise
        return self._ref(str(made["result"]["sys_id"]))

    def _read(self, ref: str) -> dict[str, Any]:
        body = self.http.get_json(
            self._path(ref),
            params={"sysparm_fields": STATUS_FIELDS, "sysparm_display_value": "false"},
        )
        return dict((body or {}).get("result") or {})

    def status(self, ref: str) -> TicketStatus:
        return self._status_of(ref, self._read(ref))

    def statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`status` of each of ``refs``, in order, with one list read per
        :data:`IDS_PER_QUERY` tickets (module docstring); a ticket the read does not
        return is read alone, so its answer is the single read's (an exception when it
        fails).

        Raises:
            ConnectorError: a list read failed (the caller reads each ticket alone).
        """
        wanted = list(dict.fromkeys(refs))
        found: dict[str, TicketStatus | Exception] = {}
        for start in range(0, len(wanted), IDS_PER_QUERY):
            chunk = wanted[start : start + IDS_PER_QUERY]
            params = {
                "sysparm_query": f"sys_idIN{','.join(chunk)}^ORDERBYsys_id",
                "sysparm_fields": STATUS_FIELDS,
                "sysparm_limit": min(STATUS_PAGE, len(chunk)),
            }
            docs: dict[str, dict[str, Any]] = {}
            for row in table_rows(self.http, self.table, params, f"{len(chunk)} tickets"):
                sys_id = str(row.get("sys_id") or "")
                if sys_id in chunk:
                    docs.setdefault(sys_id, dict(row))
            for ref in chunk:
                try:
                    doc = docs.get(ref)
                    found[ref] = self.status(ref) if doc is None else self._status_of(ref, doc)
                except QloopError as exc:
                    found[ref] = exc
        return [found[ref] for ref in refs]

    def _status_of(self, ref: str, doc: Mapping[str, Any]) -> TicketStatus:
        state = str(doc.get("state") or "")
        category = category_of(self.mapping.get("status_map") or {}, state)
        if category is None:
            msg = f"{self.http.name}: ticket {ref} has state {state!r}, not in status_map"
            raise FatalError(msg, connector=self.http.name)
        closed = None
        for name in ("closed_at", "resolved_at"):
            if category in DONE and doc.get(name):
                closed = parse_sn_time(str(doc[name]), f"ticket {ref}.{name}")
                break
        return TicketStatus(ref, state, category, closed)

    def comment(self, ref: str, comment: TicketComment) -> str:
        found = self.http.get_json(
            "/api/now/table/sys_journal_field",
            params={
                "sysparm_query": f"element_id={ref}^element=work_notes^valueLIKE{comment.marker}",
                "sysparm_fields": "sys_id",
                "sysparm_limit": 1,
            },
        )
        rows = (found or {}).get("result") or []
        if rows:
            return str(rows[0]["sys_id"])
        self.http.request(
            "PATCH", self._path(ref), json={"work_notes": comment.stamped()}, idempotent=False
        )
        return comment.marker

    def resolve(self, ref: str, comment: TicketComment) -> str:
        self.comment(ref, comment)
        status = self.status(ref)
        if status.category in DONE:
            return status.status
        change = {
            "state": "6",
            "close_code": "Solved (Permanently)",
            "close_notes": comment.stamped(),
        }
        self.http.request("PATCH", self._path(ref), json=change, idempotent=True)
        return "6"
