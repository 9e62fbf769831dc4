"""A ticket's comments read back through configured calls: one ticket per call, or a batch.

Following a complaint reads its ticket's comments (root cause and
rectification, SPEC R5). ``ticket.comments`` (the call that already finds
a comment by its marker) reads one ticket's: ``{ref}`` is the ticket, each
record at ``records`` a comment with its ``text`` and, when ``at`` is
given, its time; comments are answered oldest first by that time (ties and
comments without one keep the tool's order), as the tool's order when no
``at`` is configured.

``ticket.comments_many``, when configured, reads many tickets' comments in
one call (``{refs}``: up to ``max_refs`` ids joined by ``separator``),
paged by its own ``paginator`` when it has one. A record is a comment whose
``ticket`` path names its ticket, or (with ``entries``) a ticket holding its
comments there. Each comment is read as the single call reads it (text,
time, order), so a batch answers what one call per ticket answers; a
comment seen twice across pages (same ``ref``) is kept once, a record of a
ticket not asked for is dropped, and a ticket the answer holds nothing for
has no comments. A failed batch call raises: the caller reads each of its
tickets with the single call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.http import HttpService
from connectors.kit.paths import read
from connectors.rest.batch import BatchCall
from connectors.rest.calls import Call, answer, records_at
from connectors.rest.reader import instant_of
from core.errors import FatalError, InputError
from core.records import TicketNote

EARLIEST = datetime.min.replace(tzinfo=UTC)


def reads_notes(ticket: Mapping[str, Any] | None) -> bool:
    """Whether a ``ticket`` block can read a ticket's comments (``comments`` with {ref} only)."""
    spec = (ticket or {}).get("comments")
    return isinstance(spec, Mapping) and Call.of(spec, "comments").uses() <= {"ref"}


class NotesReader:
    """Reads comments as the ``ticket`` block's ``comments`` (and ``comments_many``) say."""

    def __init__(
        self,
        http: HttpService,
        ticket: Mapping[str, Any],
        zone: ZoneInfo,
        where: str,
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.http, self.zone, self.errors = http, zone, errors
        self.spec = dict(ticket["comments"])
        self.one = Call.of(self.spec, f"{where}.comments")
        many = ticket.get("comments_many")
        self.many_spec = dict(many or {})
        self.many = (
            BatchCall(http, self.many_spec, f"{where}.comments_many", errors) if many else None
        )

    def _path(self, name: str, default: str | None) -> str | None:
        """``comments_many``'s path ``name``, else ``comments``' (else ``default``)."""
        found = self.many_spec.get(name) or self.spec.get(name) or default
        return str(found) if found else None

    def _note(self, record: Mapping[str, Any], text: str, at: str | None, ref: str) -> TicketNote:
        raw = read(record, at) if at else None
        when: datetime | None = None
        if raw not in (None, ""):
            try:
                when = instant_of(raw, self.zone)
            except (InputError, ValueError, OverflowError):
                msg = f"{self.one.where}.at: a comment of ticket {ref}: {raw!r} is not an instant"
                raise FatalError(msg, connector=self.http.name, ref=ref) from None
        return TicketNote(text=str(read(record, text) or "").strip(), at=when)

    @staticmethod
    def _oldest_first(notes: list[TicketNote], timed: bool) -> list[TicketNote]:
        return sorted(notes, key=lambda n: n.at or EARLIEST) if timed else notes

    def notes(self, ref: str) -> list[TicketNote]:
        """Ticket ``ref``'s comments (the ``comments`` call), oldest first when timed."""
        response = self.one.send(self.http, {"ref": ref}, idempotent=True)
        doc = answer(self.http, response, self.one, self.errors)
        records = records_at(doc, str(self.spec.get("records") or "$"), self.one.where)
        text, at = str(self.spec.get("text") or "body"), self.spec.get("at")
        found = [self._note(r, text, at, ref) for r in records]
        return self._oldest_first(found, bool(at))

    def _comments(self, refs: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(ticket, comment record)`` of each comment the batch call answers."""
        assert self.many is not None
        ticket, entries = str(self.many_spec["ticket"]), self.many_spec.get("entries")
        for record in self.many.records(refs):
            owner = str(read(record, ticket))
            if not entries:
                yield owner, record
                continue
            for comment in records_at(read(record, str(entries)), "$", self.many.where):
                yield owner, comment

    def notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """:meth:`notes` of each of ``refs``, in order, with a call per ``max_refs`` tickets.

        Raises:
            ConnectorError: a batch call failed (the caller reads each ticket alone).
        """
        assert self.many is not None
        text = self._path("text", "body") or "body"
        at, key = self._path("at", None), self._path("ref", "id")
        found: dict[str, list[TicketNote]] = {ref: [] for ref in refs}
        for chunk in self.many.chunks(refs):
            asked, seen = set(chunk), set[tuple[str, str]]()
            for owner, record in self._comments(chunk):
                if owner not in asked:
                    continue  # a ticket not asked for
                ident = read(record, key) if key else None
                if ident not in (None, ""):
                    if (owner, str(ident)) in seen:
                        continue  # seen on an earlier page (a shifted offset)
                    seen.add((owner, str(ident)))
                found[owner].append(self._note(record, text, at, owner))
        return [self._oldest_first(found[ref], bool(at)) for ref in refs]
