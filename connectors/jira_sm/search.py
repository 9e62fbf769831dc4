"""Issue search: the JQL of a time window (the pages are read by :meth:`JiraClient.search`).

``/rest/api/3/search/jql`` has no ``total`` and no ``startAt``: the last
page has *no* ``nextPageToken`` (absent, not null), an empty page also ends
the stream, and a token coming back twice would loop for ever, so the kit's
loop guard stops it. Tokens are opaque and expire: never stored in a cursor.

Date literals are written either as epoch milliseconds (exact, independent
of any zone) or as ``"yyyy-MM-dd HH:mm"`` in the account's profile zone
(Jira reads bare literals in that zone, to the minute).

Every pull query leaves out the tickets qloop created (they carry
:data:`connectors.jira_sm.tickets.OWN_LABEL`), even in the same project.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from connectors.jira_sm.tickets import OWN_LABEL

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
