"""What the team wrote on a GLPI ticket, read back: its followups and its fields.

A complaint's root cause and rectification are recorded on its ticket
(SPEC R5): as followups matching a prefix or pattern, or in a ticket field
(``content``, a plugin's field), as the source's mapping says.

* Followups are the ticket's ``ITILFollowup`` sub-items
  (``GET /Ticket/{id}/ITILFollowup``), private and public alike (what the
  API user's profile may see). GLPI pages sub-items like any collection:
  ``range`` (inclusive, ``0-49`` by default), ``Content-Range:
  start-end/total``, ``206`` while more remain, ``Accept-Range`` capping a
  page, and a start past the total is ``400 ERROR_RANGE_EXCEED_TOTAL``; so
  they are read page by page with the kit's
  :class:`~connectors.kit.paging.RangePaginator`. Their ``content`` is rich text (HTML,
  entity-encoded up to GLPI 10): read as plain text. Their time is
  ``date_creation`` (else ``date``), naive in the server's zone like every
  GLPI time, converted to UTC.
* Fields come from ``GET /Ticket/{id}``; a text value is read as plain text.

An unknown ticket (``404 ERROR_ITEM_NOT_FOUND``) is a FatalError naming it.

Followups stay read one ticket per request (no ``TicketNotesBatches``):
GLPI's API has no call answering the followups of several tickets as the
single read gets them (checked in ``apirest.md`` and ``src/Api/API.php``,
GLPI 10):

* ``getMultipleItems`` runs "Get an item" per line; its ``with_*`` options
  hold no followups (``with_notes`` is the Notepad);
* ``GET /ITILFollowup?searchText[items_id]=…`` is one SQL ``LIKE`` per field
  (``Search::makeTextSearch``): one ticket per request again;
* the search engine on ``ITILFollowup`` has no option for the parent ticket
  (``ITILFollowup::rawSearchOptions``: 1 content, 2 source, 3 date, 4
  private, 5 writer, 6 itemtype, 7 id), so it cannot select by ticket;
* on ``Ticket``, the followup options (25 content, 36 date) come back as
  display values grouped per ticket (``GROUP_CONCAT``, bounded by the
  server's ``group_concat_max_len``): rendered text, ``date`` and not
  ``date_creation``, no pairing of a text with its time: not the same notes;
* the High-Level API (GLPI 11) reads the timeline per ticket too
  (``/Assistance/Ticket/{id}/Timeline/Followup``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.glpi.convert import ServerClock, html_to_text
from connectors.glpi.session import GlpiSession, error_code
from connectors.glpi.tickets import as_int
from connectors.kit.paging import LoopGuard, PageRequest, RangePaginator, body_of
from connectors.kit.stream import paginate
from core.errors import FatalError
from core.records import TicketNote

PAGE = 200
"""Followups asked per page (shrunk to the server's ``Accept-Range``)."""
EARLIEST = datetime.min.replace(tzinfo=UTC)
"""Where a followup without a time sorts (first; then by id)."""


def ticket_id_of(session: GlpiSession, ref: str) -> int:
    """``ref`` as a GLPI ticket id.

    Raises:
        FatalError: ``ref`` is not a ticket id.
    """
    ticket_id = as_int(ref)
    if ticket_id is None or ticket_id <= 0:
        msg = f"{session.name}: {ref!r} is not a GLPI ticket id"
        raise FatalError(msg, connector=session.name, ref=ref)
    return ticket_id


def _not_found(session: GlpiSession, ref: str, exc: FatalError) -> FatalError:
    msg = f"{session.name}: ticket {ref} not found ({exc})"
    return FatalError(msg, connector=session.name, status=exc.attrs.get("status"), ref=ref)


def followups(session: GlpiSession, ticket_id: int, size: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every ``ITILFollowup`` row of ticket ``ticket_id``, page by page (``range``).

    Raises:
        FatalError: no such ticket (naming it), or GLPI refused the read.
    """
    path = f"/Ticket/{ticket_id}/ITILFollowup"

    def send(request: PageRequest) -> httpx.Response:
        url, params = request.target()
        try:
            return session.request("GET", url, params=params)
        except FatalError as exc:
            code = error_code(exc)
            if code == "ERROR_RANGE_EXCEED_TOTAL":
                return httpx.Response(200, json=[])  # past the end: an empty last page
            if code == "ERROR_ITEM_NOT_FOUND" or exc.attrs.get("status") == 404:
                raise _not_found(session, str(ticket_id), exc) from None
            raise

    def rows_of(response: httpx.Response) -> list[dict[str, Any]]:
        data = body_of(response)
        return [dict(r) for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []

    paginator = RangePaginator(max(size, 1), partial_status=True, size_header="Accept-Range")
    first = PageRequest(path, {"get_hateoas": "false"})
    guard = LoopGuard(f"{session.name}: GET {path}")
    seen: set[int | None] = set()
    for rows in paginate(send, first, paginator, rows_of, guard):
        fresh = [r for r in rows if as_int(r.get("id")) not in seen]
        for row in fresh:
            seen.add(as_int(row.get("id")))
            yield row
        if not fresh:
            return  # only rows read before: a server ignoring the range


class ReadBack:
    """Reads followups and fields of tickets through one session."""

    def __init__(self, session: GlpiSession, clock: ServerClock) -> None:
        self.session = session
        self.clock = clock

    def notes(self, ref: str) -> list[TicketNote]:
        """The followups of ticket ``ref`` as plain text with their UTC time, oldest first."""
        ticket_id = ticket_id_of(self.session, ref)
        found = []
        for row in followups(self.session, ticket_id):
            at = self.clock.parse(row.get("date_creation") or row.get("date"))
            text = html_to_text(row.get("content")) or ""
            found.append((at, as_int(row.get("id")) or 0, TicketNote(text=text, at=at)))
        found.sort(key=lambda f: (f[0] or EARLIEST, f[1]))
        return [note for _, _, note in found]

    def fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Fields ``names`` of ticket ``ref`` (text as plain text; absent: None)."""
        ticket_id = ticket_id_of(self.session, ref)
        try:
            data = self.session.get(f"/Ticket/{ticket_id}", params={"get_hateoas": "false"})
        except FatalError as exc:
            if error_code(exc) == "ERROR_ITEM_NOT_FOUND" or exc.attrs.get("status") == 404:
                raise _not_found(self.session, ref, exc) from None
            raise
        ticket = data if isinstance(data, Mapping) else {}
        return {
            name: html_to_text(value) if isinstance(value, str) else value
            for name, value in ((n, ticket.get(n)) for n in names)
        }
