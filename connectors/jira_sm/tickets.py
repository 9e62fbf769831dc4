"""Nonconformity tickets: created once in Jira, then read back until closed.

Jira has no idempotency key, so a ticket carries its dedup key twice: as an
issue property (:data:`PROPERTY`, the proof) and as a label derived from it
(:func:`dedup_label`, what JQL can search). Before creating, the label is
searched and each hit's property compared. Search is eventually consistent:
a create whose reply was lost is remembered in a small ledger in the state
directory, and the next attempt polls the search for a while before it
creates again. The incident link and the property are part of the create
call itself, so a ticket never exists without them.

Changes of a finding are written as comments (ADF) carrying their key, which
is looked for among the issue's comments before writing, so a retry never
comments twice. A withdrawn finding's issue is commented, then moved along
the ``ticket.resolve_transition`` (by transition or target status name),
by default the first transition to a status of the ``done`` category; an
issue already done is left as it is.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.options import TicketOptions
from connectors.kit.halves import read_halving
from core.errors import FatalError, QloopError, RetriableError
from core.mapping import render_ticket
from core.records import Category, TicketComment, TicketNote, TicketRef, TicketRequest, TicketStatus
from core.timeutil import iso, parse_instant

PROPERTY = "qloop.nonconformity"
OWN_LABEL = "qloop-nonconformity"
"""The label every ticket qloop creates carries, so a pull's JQL can leave them out."""
_DEDUP_LABEL = re.compile(r"^qloop-[0-9a-f]{24}$")
DOUBT_WAITS = (1.0, 2.0, 4.0, 8.0)
"""Pauses between searches for a ticket whose create may have succeeded (search lag)."""
CATEGORY_KEYS = {
    "new": Category.NEW,
    "undefined": Category.NEW,
    "indeterminate": Category.IN_PROGRESS,
    "done": Category.RESOLVED,
}
_SPACE = re.compile(r"\s+")
STATUS_FIELDS = ("status", "resolutiondate", "statuscategorychangedate")
"""What a ticket's status is read from (the issue GET and the batch search alike)."""
KEYS_PER_SEARCH = 100
"""Issues per status search (one JQL ``key in`` list; ~1.5 KB of JQL)."""


def dedup_label(dedup_key: str) -> str:
    """A JQL-searchable label for ``dedup_key`` (labels allow no spaces; keys may be long)."""
    return "qloop-" + hashlib.sha256(dedup_key.encode()).hexdigest()[:24]


def is_own(labels: Any) -> bool:
    """Whether an issue's labels say qloop created it (:data:`OWN_LABEL` or a dedup label)."""
    if not isinstance(labels, list):
        return False
    return any(x == OWN_LABEL or _DEDUP_LABEL.match(str(x)) for x in labels)


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document: blank lines split paragraphs, newlines break lines."""
    blocks = [b for b in re.split(r"\n[ \t]*\n", text.strip()) if b.strip()]
    content = []
    for block in blocks:
        inline: list[dict[str, Any]] = []
        for i, line in enumerate(block.split("\n")):
            if i:
                inline.append({"type": "hardBreak"})
            if line.strip():
                inline.append({"type": "text", "text": line.rstrip()})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content or [{"type": "paragraph"}]}


class Ledger:
    """Creates in doubt and tickets known, per dedup key, in ``<state_dir>`` (SQLite)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tickets (dedup_key TEXT PRIMARY KEY, issue_key TEXT)"
        )

    def get(self, dedup_key: str) -> tuple[bool, str | None]:
        """(a create was started, the issue key when known)."""
        with self._lock:
            row = self._db.execute(
                "SELECT issue_key FROM tickets WHERE dedup_key = ?", (dedup_key,)
            ).fetchone()
        return (row is not None, row[0] if row else None)

    def begin(self, dedup_key: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO tickets VALUES (?, NULL)", (dedup_key,))

    def done(self, dedup_key: str, issue_key: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tickets VALUES (?, ?)", (dedup_key, issue_key))

    def forget(self, dedup_key: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM tickets WHERE dedup_key = ? AND issue_key IS NULL", (dedup_key,)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TicketDesk:
    """``create_ticket`` and ``ticket_status`` of the source.

    Args:
        name: The source's name (errors).
        client: The Jira client.
        ticket: Target project, issue type, link type, labels (None: not configured).
        mapping: The source mapping (``status_map``; ``ticket.jira_fields`` rendered
            with :func:`core.mapping.render_ticket` and merged into the created fields).
        ledger: Where creates in doubt are remembered.
        browse_url: Site URL for ``/browse/KEY`` links (None: unknown).
        sleep: How polling waits.
    """

    def __init__(
        self,
        name: str,
        client: JiraClient,
        ticket: TicketOptions | None,
        mapping: Mapping[str, Any],
        ledger: Ledger,
        browse_url: str | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.name, self.client, self.ticket = name, client, ticket
        self.mapping, self.ledger, self.browse_url, self.sleep = mapping, ledger, browse_url, sleep

    def _ref(self, key: str) -> TicketRef:
        return TicketRef(
            ref=key, url=f"{self.browse_url}/browse/{key}" if self.browse_url else None
        )

    def _target(self) -> TicketOptions:
        if self.ticket is None:
            msg = f"sources.{self.name}.ticket: no project configured for nonconformity tickets"
            raise FatalError(msg, connector=self.name)
        return self.ticket

    def find(self, req: TicketRequest, in_doubt: bool) -> str | None:
        """The key of the issue holding ``req.dedup_key``, polling a while when ``in_doubt``."""
        target = self._target()
        jql = f'project = "{target.project}" AND labels = "{dedup_label(req.dedup_key)}" '
        jql += "ORDER BY created ASC"
        waits = DOUBT_WAITS if in_doubt else ()
        for attempt in range(len(waits) + 1):
            page = self.client.search_page({"jql": jql, "fields": ["labels"], "maxResults": 20})
            for issue in page.get("issues") or []:
                value = self.client.issue_property(str(issue["key"]), PROPERTY)
                if isinstance(value, Mapping) and value.get("dedup_key") == req.dedup_key:
                    return str(issue["key"])
            if attempt < len(waits):
                self.sleep(waits[attempt])
        return None

    def body(self, req: TicketRequest) -> dict[str, Any]:
        """The create-issue payload: ADF description, labels, dedup property, incident link."""
        target = self._target()
        labels = [_SPACE.sub("-", x.strip()) for x in (*target.labels, *req.labels) if x.strip()]
        labels += [OWN_LABEL, dedup_label(req.dedup_key)]
        fields: dict[str, Any] = {
            "project": {"key": target.project},
            "issuetype": {"name": target.issue_type},
            "summary": _SPACE.sub(" ", req.title).strip()[:255],
            "description": adf(req.description),
            "labels": list(dict.fromkeys(labels)),
        }
        extra = (self.mapping.get("ticket") or {}).get("jira_fields") or {}
        if extra:
            values = {
                "rule": req.rule,
                "severity": req.severity,
                "incident_key": req.incident_key,
                "raised_at": iso(req.raised_at),
                "deadline": iso(req.deadline),
            }
            fields.update(render_ticket(extra, values))
        return {
            "fields": fields,
            "update": {
                "issuelinks": [
                    {
                        "add": {
                            "type": {"name": target.link_type},
                            "outwardIssue": {"key": req.incident_key},
                        }
                    }
                ]
            },
            "properties": [
                {
                    "key": PROPERTY,
                    "value": {
                        "dedup_key": req.dedup_key,
                        "incident": req.incident_key,
                        "rule": req.rule,
                        "severity": req.severity,
                        "raised_at": iso(req.raised_at),
                        "deadline": iso(req.deadline),
                    },
                }
            ],
        }

    def create(self, req: TicketRequest) -> TicketRef:
        """Create the ticket, or return the one already holding ``req.dedup_key``."""
        started, known = self.ledger.get(req.dedup_key)
        if known:
            return self._ref(known)
        found = self.find(req, in_doubt=started)
        if found:
            self.ledger.done(req.dedup_key, found)
            return self._ref(found)
        body = self.body(req)
        self.ledger.begin(req.dedup_key)
        try:
            reply = self.client.create_issue(body)
        except FatalError:
            self.ledger.forget(req.dedup_key)  # refused: nothing was created
            raise
        key = reply.get("key")
        if not key:
            msg = f"{self.name}: POST /rest/api/3/issue answered without an issue key"
            raise RetriableError(msg, connector=self.name)
        self.ledger.done(req.dedup_key, str(key))
        return self._ref(str(key))

    def comment(self, ref: str, comment: TicketComment) -> str:
        """Comment issue ``ref`` unless a comment carries ``comment.marker``; the comment's id."""
        for found in self.client.comments(ref):
            if comment.marker in adf_text(found.get("body")):
                return str(found.get("id"))
        reply = self.client.add_comment(ref, adf(comment.stamped()))
        if not reply.get("id"):
            msg = f"{self.name}: POST comment on {ref} answered without a comment id"
            raise RetriableError(msg, connector=self.name)
        return str(reply["id"])

    def fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Fields ``names`` of issue ``ref``; an Atlassian Document comes as its plain text."""
        data = self.client.issue(ref, list(names)).get("fields") or {}
        out: dict[str, Any] = {}
        for name in names:
            value = data.get(name)
            is_doc = isinstance(value, Mapping) and value.get("type") == "doc"
            out[name] = adf_text(value) if is_doc else value
        return out

    def notes(self, ref: str) -> list[TicketNote]:
        """Every comment of issue ``ref`` as plain text with its ``created`` instant."""
        out = []
        for found in self.client.comments(ref):
            created = found.get("created")
            at = parse_instant(str(created)) if created else None
            out.append(TicketNote(text=adf_text(found.get("body")), at=at))
        return out

    def resolve(self, ref: str, comment: TicketComment) -> str:
        """Comment issue ``ref`` and move it to a done status (unless done); the status's name.

        Raises:
            FatalError: no transition to a done status (or none of the configured name).
        """
        self.comment(ref, comment)
        current = self.status(ref)
        if current.is_done:
            return current.status
        options = self.client.transitions(ref)
        wanted = self.ticket.resolve_transition if self.ticket else None
        chosen = _pick_transition(options, wanted)
        if chosen is None:
            names = ", ".join(
                f"{t.get('name')} → {(t.get('to') or {}).get('name')}" for t in options
            )
            what = f"named {wanted!r}" if wanted else "to a status of the done category"
            msg = (
                f"sources.{self.name}.ticket.resolve_transition: issue {ref} has no transition "
                f"{what} (available: {names or 'none'})"
            )
            raise FatalError(msg, connector=self.name)
        self.client.transition(ref, str(chosen["id"]))
        return str((chosen.get("to") or {}).get("name") or chosen.get("name"))

    def status(self, ref: str) -> TicketStatus:
        """The ticket's status, its category (status_map, else Jira's statusCategory), closure."""
        return self._status_of(ref, self.client.issue(ref, list(STATUS_FIELDS)))

    def statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`status` of each of ``refs``, in order: one search per :data:`KEYS_PER_SEARCH`
        issues (``key in (…)``, the single read's fields, every ``nextPageToken`` page).

        JQL fails whole (400) when a key names no issue (deleted, or a project gone):
        that chunk is then searched again by halves (:func:`~connectors.kit.halves.read_halving`)
        down to the missing issue, which is read alone, so it fails as the single read
        does and the others still read by batch. An issue the search does not return under
        its key (moved to another project: it answers with its new key; created too
        recently for the index) is read alone too.

        Raises:
            ConnectorError: a search failed otherwise (the caller reads each ticket alone).
        """
        wanted = list(dict.fromkeys(refs))
        found: dict[str, TicketStatus | Exception] = {}
        for start in range(0, len(wanted), KEYS_PER_SEARCH):
            chunk = wanted[start : start + KEYS_PER_SEARCH]
            issues = read_halving(chunk, self._search_keys, _key_refused)
            for ref in chunk:
                try:
                    hit = issues.get(ref)
                    found[ref] = self.status(ref) if hit is None else self._status_of(ref, hit)
                except QloopError as exc:
                    found[ref] = exc
        return [found[ref] for ref in refs]

    def _search_keys(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The issues of ``keys`` by key: one search, every page (the first seen kept)."""
        quoted = ", ".join('"' + key.replace('"', '\\"') + '"' for key in keys)
        body = {"jql": f"key in ({quoted})", "fields": list(STATUS_FIELDS), "maxResults": len(keys)}
        issues: dict[str, dict[str, Any]] = {}
        for page in self.client.search(body):
            for issue in page:
                issues.setdefault(str(issue.get("key")), issue)
        return issues

    def _status_of(self, ref: str, issue: Mapping[str, Any]) -> TicketStatus:
        data = issue.get("fields") or {}
        status = data.get("status") or {}
        name = str(status.get("name") or "")
        category = _category(self.mapping.get("status_map") or {}, name)
        if category is None:
            cat_key = str((status.get("statusCategory") or {}).get("key") or "undefined")
            category = CATEGORY_KEYS.get(cat_key, Category.NEW)
        closed_at = None
        if category in (Category.RESOLVED, Category.CLOSED, Category.CANCELLED):
            when = data.get("resolutiondate") or data.get("statuscategorychangedate")
            closed_at = parse_instant(str(when)) if when else None
        return TicketStatus(ref=ref, status=name, category=category, closed_at=closed_at)


def _key_refused(exc: Exception) -> bool:
    """A search refused whole (400): a key names no issue (or the JQL is refused)."""
    return isinstance(exc, FatalError) and exc.attrs.get("status") == 400


def adf_text(node: Any) -> str:
    """The plain text of an Atlassian Document (text nodes joined, blocks by newlines)."""
    if not isinstance(node, Mapping):
        return ""
    if node.get("type") == "text":
        return str(node.get("text") or "")
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [adf_text(c) for c in node.get("content") or []]
    joiner = "\n" if node.get("type") == "doc" else ""
    return joiner.join(parts)


def _category(status_map: Mapping[Any, Any], name: str) -> Category | None:
    wanted = name.strip().casefold()
    for raw, value in status_map.items():
        if str(raw).strip().casefold() == wanted:
            try:
                return Category(str(value))
            except ValueError:
                return None
    return None


def _pick_transition(options: list[dict[str, Any]], wanted: str | None) -> dict[str, Any] | None:
    """The transition named ``wanted`` (or leading to a status so named), else the first to done."""
    if wanted:
        key = wanted.strip().casefold()
        for t in options:
            target = str((t.get("to") or {}).get("name") or "")
            if key in (str(t.get("name") or "").strip().casefold(), target.strip().casefold()):
                return t
        return None
    for t in options:
        category = ((t.get("to") or {}).get("statusCategory") or {}).get("key")
        if category == "done":
            return t
    return None
