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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connectors.http import HttpService
from connectors.kit.paging import LinkHeaderPaginator, LoopGuard, PageRequest
from connectors.kit.stream import paginate
from connectors.kit.text import html_text
from connectors.servicenow.reader import parse_sn_time
from core.errors import FatalError
from core.records import TicketNote

JOURNAL = "sys_journal_field"
ELEMENTS = ("comments", "work_notes")
PAGE = 1000
_HTML = re.compile(r"<(p|div|br|span|ul|ol|li|b|i|u|strong|em|h[1-6]|table|tr|td)\b[^>]*>", re.I)


def plain(value: Any) -> Any:
    """An HTML field's value as plain text (paragraphs on their own lines); others as they are."""
    if not isinstance(value, str) or not _HTML.search(value):
        return value
    return html_text(value)


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

    def notes(self, ref: str) -> list[TicketNote]:
        """The comments and work notes of ticket ``ref``, oldest first, with their UTC time."""
        self._record(ref, ["sys_id"])
        query = (
            f"element_id={ref}^name={self.table}^elementIN{','.join(ELEMENTS)}"
            "^ORDERBYsys_created_on^ORDERBYsys_id"
        )
        first = PageRequest(
            f"/api/now/table/{JOURNAL}",
            {
                "sysparm_query": query,
                "sysparm_fields": "sys_id,element,value,sys_created_on",
                "sysparm_limit": PAGE,
                "sysparm_display_value": "false",
                "sysparm_no_count": "true",
            },
        )

        def send(req: PageRequest) -> Any:
            url, params = req.target()
            return self.http.request("GET", url, params=params)

        def rows_of(response: Any) -> list[dict[str, Any]]:
            return list((self.http.json_of(response, "GET", JOURNAL) or {}).get("result") or [])

        out: list[TicketNote] = []
        guard = LoopGuard(f"{self.http.name}: {JOURNAL} of {ref}")
        try:
            for page in paginate(send, first, LinkHeaderPaginator(), rows_of, guard):
                for row in page:
                    created = str(row.get("sys_created_on") or "")
                    at = (
                        parse_sn_time(created, f"{JOURNAL} {row.get('sys_id')}")
                        if created
                        else None
                    )
                    out.append(TicketNote(text=str(row.get("value") or "").strip(), at=at))
        except FatalError as exc:
            if exc.attrs.get("status") != 404 or out:
                raise  # 404 on the first page: no entries (the ticket exists)
        return out
