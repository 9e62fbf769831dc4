"""``/search/Ticket`` by modification date, paged with ``range``.

GLPI answers a search page with ``206 Partial Content`` while rows remain
and ``200`` when the page holds the last one; ``Content-Range: a-b/total``
says where it is and ``Accept-Range: Ticket <max>`` how large a page may be.
A start past the total is ``400 ERROR_RANGE_EXCEED_TOTAL``: the end of data,
not an error. Rows are keyed by search-option ids (``"19"`` is ``date_mod``);
:data:`FIELDS` renames them.

:func:`scan` pages keyset-style over ``date_mod`` (field 19, ascending) with
the kit's :class:`~connectors.kit.paging.KeysetRangePaginator` and
:func:`~connectors.kit.stream.paginate`: each page re-anchors its criteria
at the last ``date_mod`` read (:class:`DateModAnchor`) and skips, by range
offset, the rows already read at that second (less a margin, so a row that
moved away mid-scan cannot make another one skipped; the rows read twice
are dropped). Offsets thus stay small whatever the size of the data, and a
row modified during the scan comes again later with its new ``date_mod``.
Comparisons are on GLPI's naive server-local strings, as GLPI itself does.

Every search says what it wants. A search without criteria gets the item
type's default search, which for Ticket is "not solved" (status
``notold``): solved and closed tickets would silently be left out. So each
pull search carries :data:`SCOPE`: every status, and never a ticket whose
title holds qloop's dedup marker ``[qloop:…]`` (its own nonconformity
tickets). GLPI's search shows either the live tickets or the trash
(``is_deleted=1``), never both: :func:`scan_all` reads the two and merges
them by ``date_mod``, marking trashed rows ``is_deleted``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import httpx

from connectors.glpi.convert import shift_naive
from connectors.glpi.session import GlpiSession, error_code
from connectors.kit.paging import KeysetRangePaginator, LoopGuard, PageRequest, body_of
from connectors.kit.stream import paginate
from core.errors import FatalError, RetriableError

FIELDS: dict[str, str] = {
    "1": "name",
    "2": "id",
    "3": "priority",
    "4": "requesters",
    "7": "category",
    "10": "urgency",
    "12": "status",
    "14": "type",
    "15": "date",
    "16": "closedate",
    "17": "solvedate",
    "18": "time_to_resolve",
    "19": "date_mod",
    "21": "content",
    "80": "entity",
    "82": "ttr_exceeded",
    "150": "takeintoaccount_delay_stat",
    "153": "waiting_duration",
    "154": "solve_delay_stat",
    "155": "time_to_own",
    "159": "tto_exceeded",
}
"""Ticket search options read by the connector (``forcedisplay``), by GLPI id."""
DATE_MOD = "19"
NAME = "1"
STATUS = "12"
MARGIN = 10
"""Rows re-read at the anchor second on each page (deduplicated)."""
SEARCH = "/search/Ticket"
_RANGE = re.compile(r"^\s*(\d+)-(-?\d+)/(\d+)\s*$")
OWN_MARKER = "[qloop:"
"""How the title of every ticket qloop creates begins its dedup-key suffix (writeback)."""
_OWN_TITLE = re.compile(r"\[qloop:[^\]]*\]\s*$")


class Criterion(NamedTuple):
    """One search criterion; ``link`` joins it to the previous one (AND, OR, AND NOT, OR NOT)."""

    field: str
    searchtype: str
    value: str
    link: str = "AND"


SCOPE: tuple[Criterion, ...] = (
    Criterion(STATUS, "equals", "all"),
    Criterion(NAME, "contains", OWN_MARKER, "AND NOT"),
)
"""What every pull search asks for: every status, none of qloop's own tickets."""


def is_own_title(name: object) -> bool:
    """Whether a (decoded) ticket title carries qloop's dedup marker: a ticket qloop created."""
    return bool(_OWN_TITLE.search(str(name or "")))


@dataclass(frozen=True)
class Page:
    """One page of search rows (renamed with :data:`FIELDS`) and GLPI's count of the search."""

    rows: list[dict[str, Any]]
    total: int | None


def parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    """``Content-Range: 0-199/1234`` as (start, end, total); None when absent or odd."""
    if not value:
        return None
    match = _RANGE.match(value)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def criteria_params(criteria: Iterable[tuple[str, ...]]) -> list[tuple[str, str]]:
    """The ``criteria[i][…]`` parameters of :class:`Criterion` (or plain ``(field,
    searchtype, value)`` tuples, joined with AND)."""
    params: list[tuple[str, str]] = []
    for i, raw in enumerate(criteria):
        c = Criterion(*raw)
        if i:
            params.append((f"criteria[{i}][link]", c.link))
        params += [
            (f"criteria[{i}][field]", c.field),
            (f"criteria[{i}][searchtype]", c.searchtype),
            (f"criteria[{i}][value]", c.value),
        ]
    return params


def search_params(
    criteria: Iterable[tuple[str, ...]],
    start: int,
    size: int,
    sort: str = DATE_MOD,
    order: str = "ASC",
    trash: bool = False,
) -> list[tuple[str, str]]:
    """Query parameters of a ``/search/Ticket`` call (every field displayed).

    ``criteria`` are :class:`Criterion` (or plain ``(field, searchtype, value)``
    tuples, joined with AND); ``trash`` asks for the trashed tickets instead
    of the live ones.

    Raises:
        ValueError: no criteria: GLPI would apply Ticket's default search.
    """
    params = criteria_params(criteria)
    if not params:
        msg = "a /search/Ticket without criteria gets GLPI's default search (open tickets only)"
        raise ValueError(msg)
    params += [(f"forcedisplay[{i}]", f) for i, f in enumerate(FIELDS)]
    params += [("sort", sort), ("order", order), ("range", f"{start}-{start + size - 1}")]
    if trash:
        params.append(("is_deleted", "1"))
    return params


def rename(row: Mapping[str, Any]) -> dict[str, Any]:
    """A search row keyed by field names instead of search-option ids."""
    return {FIELDS.get(str(k), str(k)): v for k, v in row.items()}


_PAST_THE_END = {"totalcount": 0, "count": 0, "data": []}


def send(session: GlpiSession, request: PageRequest) -> httpx.Response:
    """One search call; a range past the total (400 ``ERROR_RANGE_EXCEED_TOTAL``) is the
    end of data, answered here as an empty page."""
    url, params = request.target()
    try:
        return session.request("GET", url, params=params)
    except FatalError as exc:
        if error_code(exc) == "ERROR_RANGE_EXCEED_TOTAL":
            return httpx.Response(200, json=_PAST_THE_END)
        raise


def rows_of(session: GlpiSession, trash: bool, response: httpx.Response) -> list[dict[str, Any]]:
    """A search answer's rows, renamed; rows of the trash (``trash``) carry ``is_deleted`` 1."""
    data = body_of(response)
    if not isinstance(data, dict):
        msg = f"{session.name}: GET {SEARCH}: unexpected reply {response.text[:120]!r}"
        raise RetriableError(msg, connector=session.name)
    rows = [rename(r) for r in data.get("data") or [] if isinstance(r, Mapping)]
    if trash:
        for row in rows:
            row["is_deleted"] = 1
    return rows


def search_page(
    session: GlpiSession,
    criteria: Iterable[tuple[str, ...]],
    start: int,
    size: int,
    sort: str = DATE_MOD,
    order: str = "ASC",
    trash: bool = False,
) -> Page:
    """One page of ``/search/Ticket`` (rows renamed); a range past the total is empty.

    Rows of the trash (``trash``) carry ``is_deleted`` 1.
    """
    params = search_params(criteria, start, size, sort, order, trash)
    response = send(session, PageRequest(SEARCH, dict(params)))
    rows = rows_of(session, trash, response)
    total = body_of(response).get("totalcount")
    span = parse_content_range(response.headers.get("Content-Range"))
    if span is not None:
        total = span[2]
    return Page(rows, int(total) if total is not None else None)


def window(lower: str | None, upper: str | None) -> list[Criterion]:
    """:data:`SCOPE` plus naive ``lower <= date_mod < upper`` (either may be None)."""
    criteria = list(SCOPE)
    if lower is not None:
        criteria.append(Criterion(DATE_MOD, "morethan", shift_naive(lower, -1)))
    if upper is not None:
        criteria.append(Criterion(DATE_MOD, "lessthan", upper))
    return criteria


def count(session: GlpiSession, lower: str | None = None) -> int | None:
    """GLPI's ``totalcount`` of the pull scope from ``lower`` on, live and trashed tickets."""
    totals = [
        search_page(session, window(lower, None), 0, 1, trash=trash).total
        for trash in (False, True)
    ]
    if any(t is None for t in totals):
        return None
    return sum(t or 0 for t in totals)


@dataclass(frozen=True)
class DateModAnchor:
    """A scan's lower bound on ``date_mod``: the criterion ``date_mod > key − 1 s`` of
    :func:`window` (GLPI has no "at or after"), for the kit's keyset paginator."""

    upper: str | None

    def of(self, request: PageRequest) -> str | None:
        params = request.params
        for i in range(len(SCOPE), len(SCOPE) + 2):  # window()'s bounds follow SCOPE
            field = params.get(f"criteria[{i}][field]")
            if field == DATE_MOD and params.get(f"criteria[{i}][searchtype]") == "morethan":
                return shift_naive(str(params[f"criteria[{i}][value]"]), 1)
        return None

    def at(self, request: PageRequest, key: str) -> PageRequest:
        rest = {k: v for k, v in request.params.items() if not k.startswith("criteria[")}
        bounds = dict(criteria_params(window(key, self.upper)))
        return PageRequest(request.path, {**bounds, **rest}, request.headers)


def scan(
    session: GlpiSession,
    lower: str | None,
    upper: str | None,
    page_size: int,
    trash: bool = False,
    max_pages: int = 100_000,
) -> Iterator[list[dict[str, Any]]]:
    """Rows with naive ``lower <= date_mod < upper``, oldest first, one list per page.

    GLPI answers ``206`` while rows remain; ``Content-Range`` (else
    ``totalcount``) gives the count, ``Accept-Range`` the largest page. The
    kit's :class:`~connectors.kit.paging.LoopGuard` stops a scan that asks
    for a page it asked for before (a server ignoring the criteria or the
    range) or passes ``max_pages``, with a :class:`FatalError`.

    Args:
        session: The open session.
        lower: Naive lower bound (inclusive), None for no bound.
        upper: Naive upper bound (exclusive), None for no bound.
        page_size: Rows per request (shrunk to the server's ``Accept-Range``).
        trash: Scan the trash instead of the live tickets.

    A row is yielded once per (id, date_mod) in a scan; a row modified while
    the scan runs is yielded again with its new ``date_mod``.
    """
    size = max(page_size, 1)
    paginator = KeysetRangePaginator(
        size,
        partial_status=True,
        size_header="Accept-Range",
        key_path="date_mod",
        anchor=DateModAnchor(upper),
        margin=MARGIN,
        total_path="totalcount",
    )
    first = PageRequest(SEARCH, dict(search_params(window(lower, upper), 0, size, trash=trash)))
    guard = LoopGuard(f"sources.{session.name}: GET {SEARCH}", max_pages)
    top: Any = None
    at_top: set[Any] = set()  # ids read at the greatest date_mod so far: the re-read margin
    for rows in paginate(
        partial(send, session), first, paginator, partial(rows_of, session, trash), guard
    ):
        fresh = []
        for row in rows:
            ticket_id, date_mod = row.get("id"), str(row.get("date_mod"))
            if top is None or date_mod > top:
                top, at_top = date_mod, set()
            if date_mod == top:
                if ticket_id in at_top:
                    continue  # read on the page before (the margin)
                at_top.add(ticket_id)
            fresh.append(row)
        if fresh:
            yield fresh


def scan_all(
    session: GlpiSession,
    lower: str | None,
    upper: str | None,
    page_size: int,
) -> Iterator[list[dict[str, Any]]]:
    """:func:`scan` of the live tickets and of the trash, merged by ``date_mod``, in pages.

    Both scans are ascending by ``date_mod``, so the merged stream is too: a
    cursor taken after any page has read every earlier row of both.
    """
    size = max(page_size, 1)

    def rows(trash: bool) -> Iterator[dict[str, Any]]:
        for page in scan(session, lower, upper, size, trash=trash):
            yield from page

    merged = heapq.merge(rows(False), rows(True), key=lambda r: str(r.get("date_mod")))
    page: list[dict[str, Any]] = []
    for row in merged:
        page.append(row)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page
