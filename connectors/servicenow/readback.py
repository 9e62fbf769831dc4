"""What the team wrote on a ServiceNow ticket, read back: its journal and its fields.

A complaint's root cause and rectification are recorded on its ticket
(SPEC R5): as additional comments or work notes matching a prefix or
pattern, or in a field (``close_notes``, a custom ``u_root_cause``), as the
source's mapping says.

* Comments and work notes are journal entries: rows of
  ``sys_journal_field`` with ``element_id`` the ticket's sys_id, ``name``
  its table and ``element`` ``comments`` or ``work_notes``, read with the
  Table API ordered by ``sys_created_on`` (then ``sys_id``), following the
  ``Link`` header's ``next`` page. ``sys_created_on`` is UTC with
  ``sysparm_display_value=false``.
* Fields are ``GET /api/now/table/{table}/{sys_id}?sysparm_fields=…`` with
  values, not display values (``sysparm_display_value=false``); an HTML
  field's value is read as plain text.

The ticket is read first, so an unknown sys_id (``404 No Record found``) is
a FatalError naming it; the journal query itself may then answer 404 for
"no entries" (the unversioned Table API does so on an empty result), which
is read as none.

Many tickets (:meth:`ReadBack.notes_many`, the follow-complaints step) are
read with one query per :data:`IDS_PER_QUERY` tickets instead of two
requests per ticket: the tickets that exist (``sys_idIN…`` on the table,
``sys_id`` only), then their journal in one ``element_idIN…`` query with the
same conditions, order (``sys_created_on``, then ``sys_id``: a new entry
sorts last, so offset paging under concurrent writes shifts nothing) and
fields, plus ``element_id`` to tell the tickets apart; paged by the
``Link`` header like the single read. An entry seen twice across pages is
kept once (by ``sys_id``); a row of a ticket not asked for (an instance
ignoring a condition it cannot parse) is dropped. A ticket the table read
does not find is read on its own, so it fails exactly as the single read
does. The ids per query are capped so the URL stays near 4 KB (32-character
sys_ids, ``%2C`` between them): far below the 8 KB request line that
proxies and load balancers commonly accept (ServiceNow documents no limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from connectors.http import HttpService
from connectors.kit.paging import LinkHeaderPaginator, LoopGuard, PageRequest
from connectors.kit.stream import paginate
from connectors.kit.text import html_text
from connectors.servicenow.reader import parse_sn_time
from core.errors import FatalError, QloopError
from core.records import TicketNote

JOURNAL = "sys_journal_field"
ELEMENTS = ("comments", "work_notes")
PAGE = 1000
IDS_PER_QUERY = 100
"""Tickets per batch query (see the module docstring: the URL's length)."""
FIELDS = "sys_id,element,value,sys_created_on"
_HTML = re.compile(r"<(p|div|br|span|ul|ol|li|b|i|u|strong|em|h[1-6]|table|tr|td)\b[^>]*>", re.I)


def plain(value: Any) -> Any:
    """An HTML field's value as plain text (paragraphs on their own lines); others as they are."""
    if not isinstance(value, str) or not _HTML.search(value):
        return value
    return html_text(value)


def table_rows(
    http: HttpService, table: str, params: dict[str, Any], what: str
) -> Iterator[dict[str, Any]]:
    """The rows of a Table API list read (``params``: query with its ORDERBY, fields, page
    size), values not display values, no count, following the ``Link`` header's ``next``.

    A 404 on the first page is no rows (the unversioned API's empty answer).
    """
    first = PageRequest(
        f"/api/now/table/{table}",
        {**params, "sysparm_display_value": "false", "sysparm_no_count": "true"},
    )

    def send(req: PageRequest) -> Any:
        url, query = req.target()
        return http.request("GET", url, params=query)

    def rows_of(response: Any) -> list[dict[str, Any]]:
        return list((http.json_of(response, "GET", table) or {}).get("result") or [])

    guard = LoopGuard(f"{http.name}: {what}")
    read = False
    try:
        for page in paginate(send, first, LinkHeaderPaginator(), rows_of, guard):
            read = True
            yield from page
    except FatalError as exc:
        if exc.attrs.get("status") != 404 or read:
            raise  # 404 on the first page: no rows


class ReadBack:
    """Reads journal entries and fields of the tickets of one table."""

    def __init__(self, http: HttpService, table: str) -> None:
        self.http, self.table = http, table

    def _record(self, ref: str, fields: Sequence[str]) -> dict[str, Any]:
        """Fields of ticket ``ref`` (values); FatalError naming ``ref`` when it is unknown."""
        path = f"/api/now/table/{self.table}/{ref}"
        params = {
            "sysparm_fields": ",".join(fields),
            "sysparm_display_value": "false",
            "sysparm_exclude_reference_link": "true",
        }
        try:
            body = self.http.get_json(path, params=params)
        except FatalError as exc:
            if exc.attrs.get("status") == 404:
                msg = f"{self.http.name}: ticket {ref} not found in {self.table} ({exc})"
                raise FatalError(msg, connector=self.http.name, status=404, ref=ref) from None
            raise
        result = (body or {}).get("result") if isinstance(body, dict) else None
        return dict(result) if isinstance(result, dict) else {}

    def fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Fields ``names`` of ticket ``ref`` (values; HTML as plain text; absent: None)."""
        record = self._record(ref, list(names) or ["sys_id"])
        return {name: plain(record.get(name)) for name in names}

    def _journal(self, query: str, what: str, fields: str = FIELDS) -> Iterator[dict[str, Any]]:
        """The journal rows matching ``query`` (an encoded query with its ORDERBY), every page.

        A 404 on the first page is no rows (the unversioned API's empty answer).
        """
        params = {"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": PAGE}
        return table_rows(self.http, JOURNAL, params, f"{JOURNAL} of {what}")

    def _conditions(self, ids: str) -> str:
        return (
            f"{ids}^name={self.table}^elementIN{','.join(ELEMENTS)}"
            "^ORDERBYsys_created_on^ORDERBYsys_id"
        )

    @staticmethod
    def _note(row: dict[str, Any]) -> TicketNote:
        created = str(row.get("sys_created_on") or "")
        at = parse_sn_time(created, f"{JOURNAL} {row.get('sys_id')}") if created else None
        return TicketNote(text=str(row.get("value") or "").strip(), at=at)

    def notes(self, ref: str) -> list[TicketNote]:
        """The comments and work notes of ticket ``ref``, oldest first, with their UTC time."""
        self._record(ref, ["sys_id"])
        rows = self._journal(self._conditions(f"element_id={ref}"), ref)
        return [self._note(row) for row in rows]

    def _existing(self, refs: Sequence[str]) -> set[str]:
        """Which of ``refs`` are tickets of the table (one query; a 404 list: none)."""
        params = {
            "sysparm_query": f"sys_idIN{','.join(refs)}",
            "sysparm_fields": "sys_id",
            "sysparm_limit": len(refs),
            "sysparm_display_value": "false",
            "sysparm_no_count": "true",
        }
        try:
            body = self.http.get_json(f"/api/now/table/{self.table}", params=params)
        except FatalError as exc:
            if exc.attrs.get("status") == 404:
                return set()
            raise
        rows = (body or {}).get("result") if isinstance(body, dict) else None
        return {str(row.get("sys_id")) for row in rows or [] if isinstance(row, dict)}

    def notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """:meth:`notes` of each of ``refs``, in order, read a query per :data:`IDS_PER_QUERY`
        tickets (module docstring); a ticket the table does not hold is read alone (its
        answer is then the single read's, an exception when it fails).

        Raises:
            ConnectorError: a batch query failed (the caller reads each ticket alone).
        """
        wanted = list(dict.fromkeys(refs))
        found: dict[str, list[TicketNote] | Exception] = {}
        for start in range(0, len(wanted), IDS_PER_QUERY):
            chunk = wanted[start : start + IDS_PER_QUERY]
            known = self._existing(chunk)
            asked = [ref for ref in chunk if ref in known]
            notes: dict[str, list[TicketNote]] = {ref: [] for ref in asked}
            seen: set[str] = set()
            if asked:
                query = self._conditions(f"element_idIN{','.join(asked)}")
                what = f"{len(asked)} tickets"
                for row in self._journal(query, what, f"{FIELDS},element_id"):
                    ref, sys_id = str(row.get("element_id")), str(row.get("sys_id"))
                    if ref in notes and sys_id not in seen:
                        seen.add(sys_id)
                        notes[ref].append(self._note(row))
            found.update(notes)
            for ref in chunk:
                if ref not in known:
                    try:
                        found[ref] = self.notes(ref)
                    except QloopError as exc:
                        found[ref] = exc
        return [found[ref] for ref in refs]
