"""Paginators: small strategies that turn one page's answer into the next page's request.

Each paginator is configured once and keeps no state between streams: the
position lives in the :class:`PageRequest` it returns (an offset, a page
number, a token, a URL), so one instance serves every window of a backfill.
``advance`` gets the request just sent, the response and the records read
from it, and returns the next request, or None at the end.

:class:`LoopGuard` is the one guard against endless paging, used by the
stream driver for every paginator: a request already sent in this stream
(the same path and parameters: a tool repeating a token or a URL) or more
than ``max_pages`` pages is a :class:`FatalError` naming the source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from connectors.http import json_loads
from connectors.kit.paths import read
from core.errors import ConfigError, FatalError


@dataclass(frozen=True)
class PageRequest:
    """One page to ask for: a path (or absolute URL) and its query parameters."""

    path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_params(self, **changes: Any) -> PageRequest:
        params = {**self.params, **changes}
        return PageRequest(
            self.path, {k: v for k, v in params.items() if v is not None}, self.headers
        )

    def target(self) -> tuple[str, list[tuple[str, str]]]:
        """The URL without its query, and every parameter (the URL's own ones first).

        Send these (not ``path`` with ``params``): an HTTP client given
        parameters replaces the query a next-page URL already carries.
        """
        split = urlsplit(self.path)
        bare = split._replace(query="", fragment="").geturl()
        query = [*parse_qsl(split.query, keep_blank_values=True)]
        return bare, query + [(k, str(v)) for k, v in self.params.items()]

    def identity(self) -> tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        bare, query = self.target()
        return bare, tuple(sorted(query)), tuple(sorted(self.headers.items()))


class Paginator(Protocol):
    def first(self, request: PageRequest) -> PageRequest:
        """The first page's request (the paging parameters of page one added)."""
        ...

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        """The next page's request, or None when ``response`` was the last page."""
        ...


def _total(response: httpx.Response, header: str | None, path: str | None) -> int | None:
    raw: Any = None
    if header:
        raw = response.headers.get(header)
    if raw is None and path:
        raw = read(_json(response), path)
    try:
        return None if raw is None else int(raw)
    except (TypeError, ValueError):
        return None


_BODY = "qloop.kit.json"


def body_of(response: httpx.Response) -> Any:
    """The response's JSON (None when it is not JSON), parsed once and kept on the response.

    A stream's ``records_of`` and its paginator both read the body: through
    this helper a page of a hundred issues with their changelogs is parsed
    once, not twice.
    """
    if _BODY not in response.extensions:
        try:
            response.extensions[_BODY] = json_loads(response.content)
        except ValueError:
            response.extensions[_BODY] = None
    return response.extensions[_BODY]


def _json(response: httpx.Response) -> Any:
    return body_of(response)


@dataclass(frozen=True)
class OffsetPaginator:
    """``offset``/``limit`` parameters; ends on a short page or at the total when known.

    ``total_header`` / ``total_path`` name where the tool gives its count
    (``X-Total-Count``; ``meta.total``). A short page ends only when
    ``short_page_ends`` (some tools apply access rules after the limit, so a
    short page is not always the end: then the total or an empty page ends).
    ``last_path`` names a flag in the body that ends when true (Jira's
    ``isLast``, JSM's ``isLastPage``). With ``by_records`` the next offset is
    this one plus the records received, not plus ``limit``: for a tool that
    may return fewer than asked (Jira caps ``maxResults`` as it likes), where
    a short page is no end either.
    """

    limit: int
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_header: str | None = None
    total_path: str | None = None
    short_page_ends: bool = True
    last_path: str | None = None
    by_records: bool = False

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(**{self.offset_param: 0, self.limit_param: self.limit})

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        if not records:
            return None
        if self.last_path and read(_json(response), self.last_path) is True:
            return None
        step = len(records) if self.by_records else self.limit
        offset = int(request.params.get(self.offset_param, 0)) + step
        total = _total(response, self.total_header, self.total_path)
        if total is not None and offset >= total:
            return None
        short = self.short_page_ends and not self.by_records
        if total is None and short and len(records) < self.limit:
            return None
        return request.with_params(**{self.offset_param: offset})


@dataclass(frozen=True)
class PageNumberPaginator:
    """``page`` numbers (from ``base``) with a page size; ends on a short or empty page,
    at ``total_pages_path`` when the tool gives it."""

    size: int
    page_param: str = "page"
    size_param: str | None = "per_page"
    base: int = 1
    total_pages_path: str | None = None

    def first(self, request: PageRequest) -> PageRequest:
        params: dict[str, Any] = {self.page_param: self.base}
        if self.size_param:
            params[self.size_param] = self.size
        return request.with_params(**params)

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        page = int(request.params.get(self.page_param, self.base))
        pages = _total(response, None, self.total_pages_path)
        if not records or len(records) < self.size:
            return None
        if pages is not None and page - self.base + 1 >= pages:
            return None
        return request.with_params(**{self.page_param: page + 1})


@dataclass(frozen=True)
class NextTokenPaginator:
    """An opaque token in the body (``nextPageToken``) sent back as a parameter.

    A missing, null or empty token ends, and so does ``last_path`` when true
    (Jira's ``isLast``).
    """

    token_path: str = "nextPageToken"
    token_param: str = "nextPageToken"
    last_path: str | None = None

    def first(self, request: PageRequest) -> PageRequest:
        return request

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        body = _json(response)
        token = read(body, self.token_path)
        if token in (None, "") or (self.last_path and read(body, self.last_path) is True):
            return None
        return request.with_params(**{self.token_param: token})


@dataclass(frozen=True)
class NextUrlPaginator:
    """The next page's URL in the body (``links.next``, ``next``); absent or null ends."""

    url_path: str = "next"

    def first(self, request: PageRequest) -> PageRequest:
        return request

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        url = read(_json(response), self.url_path)
        if not url or not isinstance(url, str):
            return None
        return PageRequest(url, {}, request.headers)


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def link_targets(header: str) -> dict[str, str]:
    """An RFC 8288 ``Link`` header as {rel: URL} (a rel list gives each of its names)."""
    found: dict[str, str] = {}
    for url, attrs in _LINK.findall(header):
        for attr in attrs.split(";"):
            name, _, value = attr.strip().partition("=")
            if name.strip().lower() == "rel":
                for rel in value.strip().strip('"').split():
                    found.setdefault(rel.lower(), url.strip())
    return found


@dataclass(frozen=True)
class LinkHeaderPaginator:
    """Follows ``Link: <…>; rel="next"`` (ServiceNow, GitHub, Zammad); no next link ends."""

    rel: str = "next"

    def first(self, request: PageRequest) -> PageRequest:
        return request

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        url = link_targets(response.headers.get("Link", "")).get(self.rel)
        if not url or not records:
            return None
        return PageRequest(url, {}, request.headers)


_CONTENT_RANGE = re.compile(r"(?:\w+\s+)?(\d+)-(\d+)/(\d+|\*)")
_LAST_NUMBER = re.compile(r"(\d+)\s*$")


def _number_in(response: httpx.Response, header: str | None) -> int | None:
    """The last number of header ``header`` (GLPI's ``Accept-Range: Ticket 990``), if any."""
    match = _LAST_NUMBER.search(response.headers.get(header, "")) if header else None
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RangePaginator:
    """Inclusive ranges ``start-end`` (GLPI's ``range`` parameter, or a ``Range`` header).

    The answer's ``Content-Range: start-end/total`` says what remains; a
    range past the end (GLPI answers 400 ``ERROR_RANGE_EXCEED_TOTAL``, which
    the caller turns into an empty page) or a short page ends. With
    ``partial_status`` only ``206 Partial Content`` says more remain (any
    other answer is the last page, a short 206 is not). ``size_header``
    names a header whose last number caps the page size (GLPI's
    ``Accept-Range: Ticket 990``): the next ranges shrink to it.
    """

    size: int
    param: str | None = "range"
    header: str | None = None
    unit: str = "items"
    partial_status: bool = False
    size_header: str | None = None

    def _ask(self, request: PageRequest, start: int, size: int | None = None) -> PageRequest:
        text = f"{start}-{start + (size or self.size) - 1}"
        if self.param:
            return request.with_params(**{self.param: text})
        headers = {**request.headers, self.header or "Range": f"{self.unit}={text}"}
        return PageRequest(request.path, request.params, headers)

    def _span(self, request: PageRequest) -> tuple[int, int]:
        """The asked range's start and size."""
        text = (
            str(request.params.get(self.param, f"0-{self.size - 1}"))
            if self.param
            else request.headers.get(self.header or "Range", f"=0-{self.size - 1}").split("=")[-1]
        )
        start, _, end = text.partition("-")
        return int(start), max(int(end) - int(start) + 1, 1)

    def _next_size(self, response: httpx.Response, size: int) -> int:
        cap = _number_in(response, self.size_header)
        return size if cap is None else max(min(size, cap), 1)

    def first(self, request: PageRequest) -> PageRequest:
        return self._ask(request, 0)

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        if not records or (self.partial_status and response.status_code != 206):
            return None
        start, size = self._span(request)
        size = self._next_size(response, size)
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        if match is not None:
            end = int(match.group(2))
            total = match.group(3)
            if total != "*" and end + 1 >= int(total):
                return None
            return self._ask(request, end + 1, size)
        if not self.partial_status and len(records) < size:
            return None
        return self._ask(request, start + len(records), size)


class Anchor(Protocol):
    """Where a request's lower bound on the sort key sits (keyset paging)."""

    def of(self, request: PageRequest) -> str | None:
        """The key the request starts at (inclusive), None when it has no lower bound."""
        ...

    def at(self, request: PageRequest, key: str) -> PageRequest:
        """The request starting at ``key`` (inclusive)."""
        ...


@dataclass(frozen=True)
class ParamAnchor:
    """The lower bound is one query parameter, inclusive (``updated_since=<key>``)."""

    param: str = "since"

    def of(self, request: PageRequest) -> str | None:
        value = request.params.get(self.param)
        return None if value is None else str(value)

    def at(self, request: PageRequest, key: str) -> PageRequest:
        return request.with_params(**{self.param: key})


@dataclass(frozen=True)
class KeysetRangePaginator(RangePaginator):
    """Ranges over records sorted ascending on ``key_path``, re-anchored on the last key read.

    Plain offsets grow with the data and drift when records change during
    the scan (GLPI's search by ``date_mod``). Each next request moves the
    lower bound (``anchor``) to the last key of the page and starts its
    range after the records already read at that key, less ``margin`` of
    them (at most half a page), so that a record moving away mid-scan cannot
    make another one skipped; the caller drops the few records read twice
    (same id and key). A record changed during the scan comes again later
    with its new key. Ends on an empty page, at the total (``Content-Range``,
    else ``total_path`` in the body) and as :class:`RangePaginator` says
    (``partial_status``, ``size_header``).
    """

    key_path: str = "updated"
    anchor: Anchor = field(default_factory=ParamAnchor)
    margin: int = 10
    total_path: str | None = None

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        if not records or (self.partial_status and response.status_code != 206):
            return None
        start, size = self._span(request)
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        total = (
            _total(response, None, self.total_path)
            if match is None or match.group(3) == "*"
            else int(match.group(3))
        )
        if total is not None and start + len(records) >= total:
            return None
        size = self._next_size(response, size)
        last = str(read(records[-1], self.key_path))
        if last == self.anchor.of(request):
            read_at_last = start + len(records)
        else:
            request = self.anchor.at(request, last)
            read_at_last = sum(1 for r in records if str(read(r, self.key_path)) == last)
        return self._ask(request, max(0, read_at_last - min(self.margin, size // 2)), size)


@dataclass(frozen=True)
class KeysetQueryPaginator:
    """Keyset pages through one encoded-query parameter (ServiceNow's ``sysparm_query``).

    Records come sorted on (``key``, ``tie``): a coarse sort key (an update
    time to the second) and a unique tie-breaker (the record's id). After a
    page ending at (K, T) the next request first reads the rest of K,
    ``where^key=K^tie>T^ORDERBYtie`` (as many pages as that takes), then goes
    past it, ``where^key>K^ORDERBYkey^ORDERBYtie``. Offsets skip records
    that move in the sort while the table is read; a keyset does not. Only
    an empty page ends (the limit may apply before access rules, so a short
    page is no end). ``where`` (conditions joined by ``^``, no ORDER BY) is
    the stream's own filter: build one instance per window.
    """

    where: str
    key: str = "sys_updated_on"
    tie: str = "sys_id"
    param: str = "sysparm_query"

    def _query(self, *conditions: str) -> str:
        return "^".join(c for c in (self.where, *conditions) if c)

    def _past(self, key: str) -> str:
        return self._query(f"{self.key}>{key}", f"ORDERBY{self.key}", f"ORDERBY{self.tie}")

    def _rest_of(self, key: str, tie: str) -> str:
        return self._query(f"{self.key}={key}", f"{self.tie}>{tie}", f"ORDERBY{self.tie}")

    def _tail_key(self, request: PageRequest) -> str | None:
        """K when ``request`` reads the rest of key K, None when it reads in key order."""
        sent = str(request.params.get(self.param, ""))
        conditions = sent[len(self.where) :].lstrip("^") if sent.startswith(self.where) else ""
        head = f"{self.key}="
        return conditions.split("^", 1)[0][len(head) :] if conditions.startswith(head) else None

    def first(self, request: PageRequest) -> PageRequest:
        order = self._query(f"ORDERBY{self.key}", f"ORDERBY{self.tie}")
        return request.with_params(**{self.param: order})

    def advance(
        self, request: PageRequest, response: httpx.Response, records: Sequence[Any]
    ) -> PageRequest | None:
        key = self._tail_key(request)
        if not records:  # the rest of K is read: on past K; a page in key order: the end
            return None if key is None else request.with_params(**{self.param: self._past(key)})
        last = records[-1]
        key = str(read(last, self.key)) if key is None else key
        return request.with_params(**{self.param: self._rest_of(key, str(read(last, self.tie)))})


class LoopGuard:
    """Refuses a request already sent in this stream, and more than ``max_pages`` pages."""

    def __init__(self, where: str, max_pages: int = 100_000) -> None:
        self.where = where
        self.max_pages = max_pages
        self._sent: set[tuple[Any, ...]] = set()

    def check(self, request: PageRequest) -> None:
        """Call before sending ``request``.

        Raises:
            FatalError: the same page was asked for before (the tool repeats a
                token or URL), or the stream passed ``max_pages``.
        """
        key = request.identity()
        if key in self._sent:
            msg = (
                f"{self.where}: paging loop: the tool sent back a page already read "
                f"({urlsplit(request.path).path}); stopped instead of paging forever"
            )
            raise FatalError(msg)
        if len(self._sent) >= self.max_pages:
            msg = f"{self.where}: more than {self.max_pages} pages in one stream; stopped"
            raise FatalError(msg)
        self._sent.add(key)


PAGINATOR_TYPES = ("offset", "page_number", "next_token", "next_url", "link_header", "range")


def build_paginator(spec: Mapping[str, Any], where: str) -> Paginator:
    """A paginator from its YAML description (``type: page_number, size: 50, …``).

    The keys besides ``type`` are the dataclass fields of that paginator
    (``size``, ``page_param``, ``token_path``…); ``limit`` and ``size`` are
    the same thing. An unknown type or key is a :class:`ConfigError` naming
    ``where``.
    """
    kind = spec.get("type")
    fields = {k: v for k, v in spec.items() if k not in ("type", "in")}
    size = fields.pop("size", None)
    classes: dict[str, Any] = {
        "offset": OffsetPaginator,
        "page_number": PageNumberPaginator,
        "next_token": NextTokenPaginator,
        "next_url": NextUrlPaginator,
        "link_header": LinkHeaderPaginator,
        "range": RangePaginator,
    }
    if kind not in classes:
        msg = f"{where}.type: unknown paginator {kind!r} ({', '.join(PAGINATOR_TYPES)})"
        raise ConfigError(msg)
    if size is not None:
        fields["limit" if kind == "offset" else "size"] = size
    try:
        return classes[kind](**fields)  # type: ignore[no-any-return]
    except TypeError as exc:
        msg = f"{where}: bad options for the {kind} paginator ({exc})"
        raise ConfigError(msg) from None
