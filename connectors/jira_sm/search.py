"""Issue search: JQL built from a time window, and pages read by ``nextPageToken``.

``/rest/api/3/search/jql`` has no ``total`` and no ``startAt``: the last
page has *no* ``nextPageToken`` (absent, not null), an empty page also ends
the stream, and a token coming back twice would loop for ever, so it is an
error. Tokens are opaque and expire: they are never stored in a cursor.

Date literals are written either as epoch milliseconds (exact, independent
of any zone) or as ``"yyyy-MM-dd HH:mm"`` in the account's profile zone
(Jira reads bare literals in that zone, to the minute).

Every pull query leaves out the tickets qloop created (they carry
:data:`connectors.jira_sm.tickets.OWN_LABEL`), even in the same project.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.tickets import OWN_LABEL
from core.errors import FatalError

ORDER = "ORDER BY updated ASC, key ASC"


@dataclass(frozen=True)
class DateFormat:
    """How instants become JQL literals: epoch ms (``zone`` None) or minutes in ``zone``."""

    zone: tzinfo | None = None

    def floor(self, at: datetime) -> datetime:
        """The greatest instant ≤ ``at`` that a literal can express exactly."""
        at = at.astimezone(UTC)
        if self.zone is None:
            return at.replace(microsecond=at.microsecond // 1000 * 1000)
        for _ in range(4):
            wall = at.astimezone(self.zone).replace(second=0, microsecond=0, tzinfo=None)
            early = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            late = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
            if early == late:
                return early
            # a wall time in a DST fold names two instants and Jira may read either:
            # step back until the literal is unambiguous (so it is surely not after ``at``)
            at = early - timedelta(hours=1)
        return at

    def literal(self, at: datetime) -> str:
        """JQL literal of ``self.floor(at)``."""
        at = self.floor(at)
        if self.zone is None:
            return str(int(at.timestamp() * 1000))
        return '"' + at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M") + '"'


NOT_OWN = f'(labels IS EMPTY OR labels NOT IN ("{OWN_LABEL}"))'
"""Leaves out the tickets qloop created (``NOT IN`` alone would drop unlabelled issues too)."""


def scope_jql(base: str, fmt: DateFormat, lo: datetime | None) -> str:
    """What a first sync reads: ``(base) AND <not qloop's own> [AND updated >= lo]``."""
    clauses = [f"({base})", NOT_OWN]
    if lo is not None:
        clauses.append(f"updated >= {fmt.literal(lo)}")
    return " AND ".join(clauses)


def window_jql(base: str, fmt: DateFormat, lo: datetime | None, hi: datetime | None) -> str:
    """``(base) AND <not own> AND updated >= lo AND updated < hi ORDER BY updated, key``."""
    jql = scope_jql(base, fmt, lo)
    if hi is not None:
        jql += f" AND updated < {fmt.literal(hi)}"
    return jql + " " + ORDER


def search_pages(
    client: JiraClient,
    jql: str,
    fields: list[str],
    page_size: int,
    expand: str | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of issues matching ``jql``; stops on a missing token or an empty page.

    Raises:
        FatalError: the server handed back a token it already gave (a loop).
    """
    body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size}
    if expand:
        body["expand"] = expand
    seen: set[str] = set()
    while True:
        data = client.search_page(body)
        issues = data.get("issues") or []
        if issues:
            yield issues
        token = data.get("nextPageToken")
        if not issues or not token or data.get("isLast") is True:
            return
        if token in seen:
            msg = (
                f"{client.name}: POST /rest/api/3/search/jql returned page token "
                f"#{len(seen) + 1} twice: stopping instead of looping (jql {jql!r})"
            )
            raise FatalError(msg, connector=client.name)
        seen.add(token)
        body = {**body, "nextPageToken": token}
