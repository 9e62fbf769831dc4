"""The Jira Cloud / JSM REST calls the source makes, on one :class:`HttpService`.

One method per endpoint, returning plain JSON. Every paged endpoint is
walked by the kit's :func:`~connectors.kit.stream.paginate` with its one
:class:`~connectors.kit.paging.LoopGuard`: the issue search with a
:class:`~connectors.kit.paging.NextTokenPaginator` (``nextPageToken`` in the
body, sent back in the next POST body), the changelog and comments with
``startAt``/``maxResults`` and the JSM endpoints with ``start``/``limit``
(:class:`~connectors.kit.paging.OffsetPaginator`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from connectors.http import HttpService
from connectors.jira_sm.options import JiraOptions
from connectors.kit.paging import (
    LoopGuard,
    NextTokenPaginator,
    OffsetPaginator,
    PageRequest,
    Paginator,
    body_of,
)
from connectors.kit.stream import paginate
from core.errors import ConnectorError, FatalError

SEARCH = "/rest/api/3/search/jql"
CHANGELOG_PAGE = 100
SD_PAGE = 50
COMMENT_PAGE = 100
SEARCH_PAGING = NextTokenPaginator(last_path="isLast")
"""``/search/jql``: the last page has no ``nextPageToken`` (or ``isLast: true``)."""
CHANGELOG_PAGING = OffsetPaginator(
    CHANGELOG_PAGE,
    offset_param="startAt",
    limit_param="maxResults",
    total_path="total",
    last_path="isLast",
    by_records=True,
)
COMMENT_PAGING = OffsetPaginator(
    COMMENT_PAGE,
    offset_param="startAt",
    limit_param="maxResults",
    total_path="total",
    by_records=True,
)
SD_PAGING = OffsetPaginator(
    SD_PAGE, offset_param="start", limit_param="limit", last_path="isLastPage", by_records=True
)
"""JSM pages (``start``/``limit``, ``isLastPage``)."""


def jira_message(response: httpx.Response) -> str | None:
    """Jira's own error text: ``errorMessages`` and ``errors`` (field → message), joined."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] or None
    if not isinstance(data, dict):
        return str(data)[:300] or None
    parts = [str(m) for m in data.get("errorMessages") or []]
    errors = data.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {text}" for field, text in errors.items()]
    for key in ("message", "errorMessage", "error"):
        if not parts and isinstance(data.get(key), str):
            parts.append(data[key])
    return "; ".join(parts)[:500] or None


def auth_headers(opts: JiraOptions) -> dict[str, str]:
    """``Authorization`` for Basic (email + API token) or Bearer (OAuth, scoped token)."""
    if opts.bearer_token:
        return {"Authorization": f"Bearer {opts.bearer_token}"}
    pair = f"{opts.email}:{opts.api_token}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def issue_path(key: str, tail: str = "") -> str:
    return f"/rest/api/3/issue/{quote(key, safe='')}{tail}"


class JiraClient:
    """Thin typed wrapper of the Jira endpoints (errors come from :class:`HttpService`).

    Args:
        name: The source's configured name (named in errors).
        opts: Validated options (URL, auth, rate, timeout, TLS).
        sleep: How retries and the host budget wait.
        transport: An ``httpx`` transport (tests).
        redis_url: The deployment's Redis (the host budget shared by every process).
    """

    def __init__(
        self,
        name: str,
        opts: JiraOptions,
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.name = name
        self.http = HttpService(
            name,
            opts.api_url,
            headers={**auth_headers(opts), "Accept": "application/json"},
            timeout=opts.timeout,
            verify=opts.verify_tls,
            rate=opts.rate,
            sleep=sleep,
            message_of=jira_message,
            transport=transport,
            redis_url=redis_url,
        )

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response, method: str, path: str, what: str) -> dict[str, Any]:
        """A page's JSON object, parsed once (the paginator reads the same parse)."""
        data = body_of(response)
        if data is None:
            data = self.http.json_of(response, method, path)  # not JSON: its error
        return self._dict(data, what)

    def _dict(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            msg = f"{self.name}: {what}: expected a JSON object, got {type(value).__name__}"
            raise FatalError(msg, connector=self.name)
        return value

    # -- account and search -------------------------------------------------

    def myself(self) -> dict[str, Any]:
        return self._dict(self.http.get_json("/rest/api/3/myself"), "GET /myself")

    def server_info(self) -> dict[str, Any]:
        """``GET /rest/api/3/serverInfo``: base URL, version, deployment type."""
        return self._dict(self.http.get_json("/rest/api/3/serverInfo"), "GET /serverInfo")

    def servicedesk_info(self) -> dict[str, Any]:
        """``GET /rest/servicedeskapi/info``: Jira Service Management's version (404: none)."""
        data = self.http.get_json("/rest/servicedeskapi/info")
        return self._dict(data, "GET /rest/servicedeskapi/info")

    def search_page(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page of ``POST /rest/api/3/search/jql`` (``body``: jql, fields, nextPageToken…)."""
        return self._dict(self.http.post_json(SEARCH, body, idempotent=True), f"POST {SEARCH}")

    def _search(self, request: PageRequest) -> httpx.Response:
        """POST one search page: the request's parameters are the JSON body."""
        return self.http.request("POST", SEARCH, json=dict(request.params), idempotent=True)

    def _issues(self, response: httpx.Response) -> list[dict[str, Any]]:
        data = self._json(response, "POST", SEARCH, f"POST {SEARCH}")
        return [i for i in data.get("issues") or [] if isinstance(i, dict)]

    def search(self, body: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Pages of issues of a search (``body``: jql, fields, maxResults, expand).

        Ends on the last page (no ``nextPageToken``, or ``isLast``) or an
        empty page; a token coming back twice is the kit's loop guard's
        :class:`FatalError` (tokens are opaque and expire: never stored).
        """
        guard = LoopGuard(f"{self.name}: POST {SEARCH}")
        first = PageRequest(SEARCH, body)
        for issues in paginate(self._search, first, SEARCH_PAGING, self._issues, guard):
            if not issues:
                return
            yield issues

    def fields(self) -> list[dict[str, Any]]:
        """``GET /rest/api/3/field``: every field of the site, system and custom."""
        data = self.http.get_json("/rest/api/3/field")
        if not isinstance(data, list):
            msg = f"{self.name}: GET /rest/api/3/field: expected a JSON list"
            raise FatalError(msg, connector=self.name)
        return [f for f in data if isinstance(f, dict)]

    def approximate_count(self, jql: str) -> int:
        data = self.http.post_json(
            "/rest/api/3/search/approximate-count", {"jql": jql}, idempotent=True
        )
        return int(self._dict(data, "approximate-count").get("count") or 0)

    def permissions(self, project: str, keys: list[str]) -> dict[str, bool]:
        data = self.http.get_json(
            "/rest/api/3/mypermissions",
            params={"projectKey": project, "permissions": ",".join(keys)},
        )
        perms = self._dict(data, "mypermissions").get("permissions") or {}
        return {k: bool((perms.get(k) or {}).get("havePermission")) for k in keys}

    # -- per issue ------------------------------------------------------------

    def _pages(
        self, path: str, params: dict[str, Any], paging: Paginator, items: str, what: str
    ) -> Iterator[dict[str, Any]]:
        """Every item (under ``items``) of a paged GET, as ``paging`` walks it."""

        def send(request: PageRequest) -> httpx.Response:
            url, query = request.target()
            return self.http.request("GET", url, params=query)

        def records(response: httpx.Response) -> list[dict[str, Any]]:
            data = self._json(response, "GET", path, what)
            return [v for v in data.get(items) or [] if isinstance(v, dict)]

        guard = LoopGuard(f"{self.name}: {what}")
        for page in paginate(send, PageRequest(path, params), paging, records, guard):
            yield from page

    def changelog(self, key: str) -> Iterator[dict[str, Any]]:
        """Every history of issue ``key``, oldest first, paging ``startAt``/``maxResults``."""
        return self._pages(
            issue_path(key, "/changelog"), {}, CHANGELOG_PAGING, "values", f"changelog of {key}"
        )

    def _servicedesk_pages(self, path: str, what: str) -> Iterator[dict[str, Any]]:
        return self._pages(path, {}, SD_PAGING, "values", what)

    def sla(self, key: str) -> list[dict[str, Any]]:
        """The JSM SLA metrics of request ``key`` (empty when it is not a JSM request)."""
        path = f"/rest/servicedeskapi/request/{quote(key, safe='')}/sla"
        try:
            return list(self._servicedesk_pages(path, f"SLA of {key}"))
        except ConnectorError as exc:
            if exc.status == 404:
                return []  # an issue that is not a service request has no SLA
            raise

    def participants(self, key: str) -> list[dict[str, Any]]:
        path = f"/rest/servicedeskapi/request/{quote(key, safe='')}/participant"
        try:
            return list(self._servicedesk_pages(path, f"participants of {key}"))
        except ConnectorError as exc:
            if exc.status == 404:
                return []
            raise

    def issue(self, key: str, fields: list[str]) -> dict[str, Any]:
        data = self.http.get_json(issue_path(key), params={"fields": ",".join(fields)})
        return self._dict(data, f"issue {key}")

    def issue_property(self, key: str, prop: str) -> Any:
        """The value of entity property ``prop`` of issue ``key`` (None: not set)."""
        try:
            data = self.http.get_json(issue_path(key, f"/properties/{quote(prop, safe='')}"))
        except ConnectorError as exc:
            if exc.status == 404:
                return None
            raise
        return self._dict(data, f"property {prop} of {key}").get("value")

    def create_issue(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /rest/api/3/issue`` sent once: a lost reply must not become a second issue.

        The caller retries the whole create after searching for the ticket.
        """
        response = self.http.send_once("POST", "/rest/api/3/issue", json=body)
        return self._dict(self.http.json_of(response, "POST", "/rest/api/3/issue"), "POST /issue")

    # -- comments and transitions of qloop's tickets ----------------------------

    def comments(self, key: str) -> Iterator[dict[str, Any]]:
        """Every comment of issue ``key``, oldest first (``GET …/comment``, paged)."""
        return self._pages(
            issue_path(key, "/comment"),
            {"orderBy": "created"},
            COMMENT_PAGING,
            "comments",
            f"comments of {key}",
        )

    def add_comment(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST …/comment`` sent once (the caller looks for the comment before a retry)."""
        path = issue_path(key, "/comment")
        response = self.http.send_once("POST", path, json={"body": body})
        return self._dict(self.http.json_of(response, "POST", path), f"comment on {key}")

    def transitions(self, key: str) -> list[dict[str, Any]]:
        """The transitions issue ``key`` can take now, with their target status."""
        data = self._dict(
            self.http.get_json(issue_path(key, "/transitions")), f"transitions of {key}"
        )
        found = data.get("transitions") or []
        return [t for t in found if isinstance(t, dict)]

    def transition(self, key: str, transition_id: str) -> None:
        """``POST …/transitions`` (204); a second identical call fails harmlessly (400)."""
        self.http.send_once(
            "POST", issue_path(key, "/transitions"), json={"transition": {"id": transition_id}}
        )
