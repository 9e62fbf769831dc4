"""One GLPI ticket as the raw record qloop maps: search row + actors + solution + status log.

A page of search rows is read in bulk first (:meth:`TicketReader.prefetch`),
so a page costs the search plus a constant number of calls, not calls per ticket:

* ``GET /getMultipleItems`` with ``items[i][itemtype]=Ticket``,
  ``items[i][items_id]=…`` and ``with_logs=true`` (apirest.md, "Get multiple
  items"): each ticket comes back with its ``_logs`` (every row of
  ``glpi_logs`` for it), :data:`BULK` tickets a call;
* the requesters' logins come in the search row itself (``forcedisplay``
  of option 4, Requester), and every user not yet known is read with one
  ``GET /search/User`` (login ``^…$`` criteria joined by OR, displaying
  login, e-mail, phones, names), :data:`BULK` users a call.

* the solutions of solved and closed tickets: GLPI logs each solution
  added on its ticket as a sub-item (``itemtype_link`` ITILSolution,
  ``linked_action`` 17, the new value ending in the solution's id), so the
  logs above name them, and one more ``getMultipleItems`` (ITILSolution
  lines) reads them; the last one not refused is the ticket's solution. A
  ticket in any other status has no solution in force.

The per-item calls below remain as the fallback, per ticket, where the bulk
forms cannot give the data: an anonymous requester (no user, only an
``alternative_email``, which no search option shows), a ``_logs`` that GLPI
withheld (the profile lacks the history right), a chunk that
``getMultipleItems`` refused (it fails whole when one item is gone), and a
solved ticket whose log names no solution (a purged history).

The per-item reads are

* ``/Ticket/{id}/Ticket_User``: the requester (``type`` 1; an anonymous one
  has ``users_id`` 0 and an ``alternative_email``);
* ``/User/{id}`` (phone, phone2, mobile, names) and ``/User/{id}/UserEmail``
  (the default address first), cached per reader;
* ``/Ticket/{id}/ITILSolution``: the last solution not refused;
* ``/Ticket/{id}/Log``: status changes are ``id_search_option`` 12, old and
  new values are status ids.

and builds the dict described in ``mappings/glpi.yaml``: GLPI's values
(text HTML-decoded), plus ``utc`` holding every instant converted from the
server's zone to aware UTC (ISO 8601) and the status history built from the
log (entered status per change, the initial status at ``date``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.glpi.convert import ServerClock, decode_text, html_to_text
from connectors.glpi.session import GlpiSession, error_code
from core.errors import FatalError
from core.timeutil import iso

STATUS_FIELD = "12"
REQUESTER = 1
STATUS_NAMES = {
    1: "New",
    2: "Processing (assigned)",
    3: "Processing (planned)",
    4: "Pending",
    5: "Solved",
    6: "Closed",
}
SOLUTION_REFUSED = 4
SOLVED = (5, 6)
BULK = 50
"""Items per ``getMultipleItems`` or users per ``/search/User`` call (keeps URLs short)."""
USER_FIELDS = {"1": "name", "2": "id", "5": "email", "6": "phone", "9": "firstname",
               "10": "phone2", "11": "mobile", "34": "realname"}  # fmt: skip
"""User search options read for requesters (login, id, default e-mail, phones, names)."""
ADD_SUBITEM = 17
"""Log::HISTORY_ADD_SUBITEM: a child item (a solution) was added to the ticket."""
_TRAILING_ID = re.compile(r"\((\d+)\)\s*$")
_MULTI = "$$##$$"
"""GLPI's separator of a multi-valued search column (one value per linked row)."""
_DATES = ("date", "date_mod", "solvedate", "closedate", "time_to_own", "time_to_resolve")
_TEXT = ("name", "category", "entity")


def as_int(value: Any) -> int | None:
    """GLPI ids and enums arrive as ints or numeric strings; None when neither."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip() if value is not None else ""
    return int(text) if text.lstrip("-").isdigit() else None


def _flag(value: Any) -> bool | None:
    number = as_int(value)
    return None if number is None else bool(number)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def values_of(cell: Any) -> list[str]:
    """A search cell as its values: a list, or a string GLPI joined with ``$$##$$``.

    A value of the form ``name$#$id`` (the search engine's raw form) keeps its name.
    """
    parts: Iterable[Any] = cell if isinstance(cell, list) else str(cell or "").split(_MULTI)
    out = []
    for part in parts:
        text = str(part if part is not None else "").split("$#$", 1)[0].strip()
        if text:
            out.append(text)
    return out


def status_changes(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Status changes (search option 12) of log rows, oldest first (log ids are monotonic)."""
    changes = [
        e for e in entries
        if isinstance(e, Mapping) and str(e.get("id_search_option")) == STATUS_FIELD
    ]  # fmt: skip
    changes.sort(key=lambda e: as_int(e.get("id")) or 0)
    return [
        {
            "id": as_int(e.get("id")),
            "date_mod": e.get("date_mod"),
            "old": as_int(e.get("old_value")),
            "new": as_int(e.get("new_value")),
        }
        for e in changes
    ]


UNREAD: Any = object()
"""A ticket's solution not read in bulk (read it per item)."""


def added_solutions(entries: Iterable[Any]) -> list[int]:
    """Ids of the solutions a ticket's log says were added (sub-item additions)."""
    found = []
    for e in entries:
        if not isinstance(e, Mapping) or str(e.get("itemtype_link")) != "ITILSolution":
            continue
        if as_int(e.get("linked_action")) != ADD_SUBITEM:
            continue
        match = _TRAILING_ID.search(str(e.get("new_value") or ""))
        if match:
            found.append(int(match.group(1)))
    return found


def rows_status(rows: Sequence[Mapping[str, Any]], ticket_id: int) -> Any:
    """The ``status`` of the search row of ``ticket_id`` in ``rows``."""
    return next((r.get("status") for r in rows if as_int(r.get("id")) == ticket_id), None)


def digest(raw: Mapping[str, Any]) -> str:
    """A short stable digest of a raw record (to tell a same-second change from a re-read)."""
    blob = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TicketReader:
    """Builds raw ticket records; safe to share between backfill threads."""

    def __init__(self, session: GlpiSession, clock: ServerClock) -> None:
        self.session = session
        self.clock = clock
        self._users: dict[int, dict[str, Any]] = {}
        self._logins: dict[str, dict[str, Any] | None] = {}
        self._logs: dict[int, list[dict[str, Any]]] = {}
        self._requesters: dict[int, dict[str, Any]] = {}
        self._solutions: dict[int, dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    def forget_users(self) -> None:
        """Drop cached users (each pull reads contact details afresh)."""
        with self._lock:
            self._users.clear()
            self._logins.clear()

    # -- bulk reads --------------------------------------------------------------

    def prefetch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Read the logs and requesters of a page of search rows in bulk (see the docstring)."""
        ids = [t for t in (as_int(r.get("id")) for r in rows) if t is not None]
        if not ids:
            return
        logs, solution_ids = self.bulk_logs(ids)
        requesters = self.bulk_requesters(rows)
        solved = {
            t: solution_ids[t]
            for t in (as_int(r.get("id")) for r in rows)
            if t is not None and t in solution_ids and as_int(rows_status(rows, t)) in SOLVED
        }
        solutions = self.bulk_solutions(solved)
        with self._lock:
            self._logs.update(logs)
            self._requesters.update(requesters)
            self._solutions.update(solutions)

    def bulk_logs(
        self, ids: Sequence[int]
    ) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[int]]]:
        """Status logs of tickets by ``getMultipleItems`` with ``with_logs`` (absent: read per
        item), and the ids of the solutions their logs say were added."""
        out: dict[int, list[dict[str, Any]]] = {}
        added: dict[int, list[int]] = {}
        for chunk in chunks(ids, BULK):
            params = [("with_logs", "true"), ("get_hateoas", "false")]
            for i, ticket_id in enumerate(chunk):
                params += [(f"items[{i}][itemtype]", "Ticket"),
                           (f"items[{i}][items_id]", str(ticket_id))]  # fmt: skip
            try:
                data = self.session.get("/getMultipleItems", params=params)
            except FatalError as exc:  # all or nothing: one trashed-and-purged item fails it
                if error_code(exc) in ("ERROR_ITEM_NOT_FOUND", "ERROR_RIGHT_MISSING"):
                    continue
                raise
            for item in data if isinstance(data, list) else []:
                if not isinstance(item, Mapping):
                    continue
                ticket_id, logs = as_int(item.get("id")), item.get("_logs")
                entries = list(logs.values()) if isinstance(logs, Mapping) else logs
                if ticket_id is None or not isinstance(entries, list):
                    continue
                if not all(isinstance(e, Mapping) for e in entries):
                    continue  # GLPI's right error in place of the logs: read them per item
                out[ticket_id] = status_changes(entries)
                added[ticket_id] = added_solutions(entries)
        return out, added

    def bulk_solutions(self, wanted: Mapping[int, list[int]]) -> dict[int, dict[str, Any] | None]:
        """The solution in force of each ticket, from its solutions read by ``getMultipleItems``.

        A ticket whose solutions could not be read (a chunk refused) is left
        out: :meth:`solution` reads it per item.
        """
        ids = sorted({s for found in wanted.values() for s in found})
        read_rows: dict[int, dict[str, Any]] = {}
        failed: set[int] = set()
        for chunk in chunks(ids, BULK):
            params = [("get_hateoas", "false")]
            for i, solution_id in enumerate(chunk):
                params += [(f"items[{i}][itemtype]", "ITILSolution"),
                           (f"items[{i}][items_id]", str(solution_id))]  # fmt: skip
            try:
                data = self.session.get("/getMultipleItems", params=params)
            except FatalError as exc:
                if error_code(exc) in ("ERROR_ITEM_NOT_FOUND", "ERROR_RIGHT_MISSING"):
                    failed |= set(chunk)
                    continue
                raise
            for item in data if isinstance(data, list) else []:
                if isinstance(item, Mapping) and as_int(item.get("id")) is not None:
                    read_rows[int(item["id"])] = dict(item)
        out: dict[int, dict[str, Any] | None] = {}
        for ticket_id, found in wanted.items():
            if failed & set(found) or not found:
                continue
            out[ticket_id] = self._in_force([read_rows[s] for s in found if s in read_rows])
        return out

    def _in_force(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The last solution not refused, as the raw record carries it."""
        rows = [s for s in rows if as_int(s.get("status")) != SOLUTION_REFUSED]
        if not rows:
            return None
        rows.sort(key=lambda s: as_int(s.get("id")) or 0)
        last = rows[-1]
        return {
            "id": as_int(last.get("id")),
            "status": as_int(last.get("status")),
            "content": html_to_text(last.get("content")),
            "date": iso(self.clock.parse(last.get("date_creation") or last.get("date_mod"))),
        }

    def bulk_requesters(self, rows: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
        """The first requester of each row from its option-4 logins, users read in bulk.

        A row without a requester login (an anonymous requester, or none) is
        left out: :meth:`requester` reads it per item.
        """
        firsts: dict[int, str] = {}
        for row in rows:
            ticket_id, logins = as_int(row.get("id")), values_of(row.get("requesters"))
            if ticket_id is not None and logins:
                firsts[ticket_id] = decode_text(logins[0]) or logins[0]
        with self._lock:
            unknown = sorted({login for login in firsts.values() if login not in self._logins})
        found = self.bulk_users(unknown)
        with self._lock:
            for login in unknown:
                self._logins[login] = found.get(login)
            known = {t: self._logins.get(login) for t, login in firsts.items()}
        return {t: user for t, user in known.items() if user is not None}

    def bulk_users(self, logins: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Users by login through ``/search/User`` (``^login$`` criteria joined by OR)."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(logins), BULK):
            params: list[tuple[str, str]] = []
            for i, login in enumerate(chunk):
                if i:
                    params.append((f"criteria[{i}][link]", "OR"))
                params += [(f"criteria[{i}][field]", "1"),
                           (f"criteria[{i}][searchtype]", "contains"),
                           (f"criteria[{i}][value]", f"^{login}$")]  # fmt: skip
            params += [(f"forcedisplay[{i}]", f) for i, f in enumerate(USER_FIELDS)]
            params.append(("range", f"0-{len(chunk) - 1}"))
            try:
                data = self.session.get("/search/User", params=params)
            except FatalError as exc:
                if error_code(exc) in ("ERROR_RIGHT_MISSING", "ERROR_RANGE_EXCEED_TOTAL"):
                    continue  # no right to search users: per item
                raise
            rows = data.get("data") if isinstance(data, Mapping) else None
            for row in rows.values() if isinstance(rows, Mapping) else rows or []:
                if not isinstance(row, Mapping):
                    continue
                named = {USER_FIELDS.get(str(k), str(k)): v for k, v in row.items()}
                user_id = as_int(named.get("id"))
                if user_id is None:
                    continue
                emails = values_of(named.get("email"))
                user = self._user_record(user_id, named, emails[0] if emails else None)
                login = user["login"] or ""
                out[login] = user
                with self._lock:
                    self._users[user_id] = user
        return out

    @staticmethod
    def _user_record(user_id: int, data: Mapping[str, Any], email: Any) -> dict[str, Any]:
        first, last = decode_text(data.get("firstname")), decode_text(data.get("realname"))
        display = " ".join(p for p in (first, last) if p) or decode_text(data.get("name"))
        return {
            "id": user_id,
            "login": decode_text(data.get("name")),
            "firstname": first,
            "realname": last,
            "display": display,
            "phone": decode_text(data.get("phone")) or None,
            "phone2": decode_text(data.get("phone2")) or None,
            "mobile": decode_text(data.get("mobile")) or None,
            "email": decode_text(email) if email else None,
        }

    def _prefetched(self, ticket_id: int) -> tuple[Any, Any, Any]:
        """The bulk-read (log, requester, solution) of a ticket, consumed; :data:`UNREAD`
        for a solution not read (None is "no solution in force")."""
        with self._lock:
            return (
                self._logs.pop(ticket_id, None),
                self._requesters.pop(ticket_id, None),
                self._solutions.pop(ticket_id, UNREAD),
            )

    # -- per-item reads (fallback) -----------------------------------------------

    def _list(self, path: str) -> list[dict[str, Any]]:
        try:
            data = self.session.get(path, params={"range": "0-999", "get_hateoas": "false"})
        except FatalError as exc:
            if error_code(exc) in ("ERROR_ITEM_NOT_FOUND", "ERROR_RANGE_EXCEED_TOTAL"):
                return []
            raise
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    def user(self, user_id: int) -> dict[str, Any]:
        """A requester's name, phones and e-mail (cached)."""
        with self._lock:
            cached = self._users.get(user_id)
        if cached is not None:
            return cached
        try:
            data = self.session.get(f"/User/{user_id}", params={"get_hateoas": "false"})
        except FatalError as exc:
            if error_code(exc) not in ("ERROR_ITEM_NOT_FOUND", "ERROR_RIGHT_MISSING"):
                raise
            data = {}
        data = data if isinstance(data, Mapping) else {}
        emails = self._list(f"/User/{user_id}/UserEmail") if data else []
        emails.sort(key=lambda e: (-(as_int(e.get("is_default")) or 0), as_int(e.get("id")) or 0))
        user = self._user_record(user_id, data, emails[0].get("email") if emails else None)
        with self._lock:
            self._users[user_id] = user
        return user

    def requester(self, ticket_id: int) -> dict[str, Any] | None:
        """The first requester of a ticket (a user, or an anonymous e-mail)."""
        actors = [a for a in self._list(f"/Ticket/{ticket_id}/Ticket_User")]
        actors = [a for a in actors if as_int(a.get("type")) == REQUESTER]
        actors.sort(key=lambda a: as_int(a.get("id")) or 0)
        for actor in actors:
            user_id = as_int(actor.get("users_id")) or 0
            if user_id > 0:
                return self.user(user_id)
            alt = decode_text(actor.get("alternative_email"))
            if alt:
                return {"id": 0, "display": alt, "email": alt, "phone": None, "mobile": None}
        return None

    def solution(self, ticket_id: int) -> dict[str, Any] | None:
        """The last solution that was not refused."""
        rows = [
            s
            for s in self._list(f"/Ticket/{ticket_id}/ITILSolution")
            if as_int(s.get("status")) != SOLUTION_REFUSED
        ]
        return self._in_force(rows)

    def status_log(self, ticket_id: int) -> list[dict[str, Any]]:
        """Status changes from the ticket's log, oldest first (log ids are monotonic)."""
        return status_changes(self._list(f"/Ticket/{ticket_id}/Log"))

    def history(
        self,
        created: datetime,
        status: int | None,
        log: list[dict[str, Any]],
        row: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """``[{at, status}]`` in UTC: the initial status at ``date``, then each logged change.

        Log instants are converted so they never go back (the repeated hour
        at the end of DST is read as its second occurrence when needed).
        Without a status log (purged, imported tickets) the history is
        rebuilt from ``solvedate``/``closedate`` as far as they tell.
        """
        if not log:
            out = [{"at": iso(created), "status": 1 if status not in (None, 1) else status}]
            solved = self.clock.parse(row.get("solvedate"), not_before=created)
            closed = self.clock.parse(row.get("closedate"), not_before=created)
            if status in (5, 6) and solved is not None:
                out.append({"at": iso(solved), "status": 5})
            if status == 6 and closed is not None:
                out.append({"at": iso(closed), "status": 6})
            if len(out) == 1:
                out = [{"at": iso(created), "status": status}]
            return out
        first = log[0]["old"] if log[0]["old"] is not None else 1
        out = [{"at": iso(created), "status": first}]
        previous = created
        for entry in log:
            at = self.clock.parse(entry["date_mod"], not_before=previous) or previous
            at = max(at, previous)
            out.append({"at": iso(at), "status": entry["new"]})
            previous = at
        return out

    def build(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The raw record of one search row (see the module docstring)."""
        ticket_id = as_int(row.get("id"))
        if ticket_id is None:
            msg = f"{self.session.name}: a search row has no ticket id: {dict(row)!r}"[:300]
            raise FatalError(msg, connector=self.session.name)
        status = as_int(row.get("status"))
        raw: dict[str, Any] = {
            "id": ticket_id,
            "status": status,
            "status_name": STATUS_NAMES.get(status or 0),
            "priority": as_int(row.get("priority")),
            "urgency": as_int(row.get("urgency")),
            "type": as_int(row.get("type")),
            "content": html_to_text(row.get("content")),
            "takeintoaccount_delay_stat": as_int(row.get("takeintoaccount_delay_stat")),
            "solve_delay_stat": as_int(row.get("solve_delay_stat")),
            "waiting_duration": as_int(row.get("waiting_duration")),
            "tto_exceeded": _flag(row.get("tto_exceeded")),
            "ttr_exceeded": _flag(row.get("ttr_exceeded")),
        }
        for name in _TEXT:
            raw[name] = decode_text(row.get(name))
        for name in _DATES:
            raw[name] = row.get(name) or None
        created = self.clock.parse(row.get("date"))
        log, requester, solution = self._prefetched(ticket_id)
        if log is None:
            log = self.status_log(ticket_id)
        utc: dict[str, Any] = {
            n: iso(self.clock.parse(row.get(n), not_before=created)) for n in _DATES
        }
        history = self.history(created, status, log, row) if created is not None else []
        if history:
            last_change = datetime.fromisoformat(history[-1]["at"])
            updated = self.clock.parse(row.get("date_mod"), not_before=last_change)
            utc["date_mod"] = iso(updated)
        utc["history"] = history
        raw["utc"] = utc
        raw["log"] = log
        raw["requester"] = requester if requester is not None else self.requester(ticket_id)
        if status not in SOLVED:
            solution = None
        elif solution is UNREAD:
            solution = self.solution(ticket_id)
        raw["solution"] = solution
        raw["sla"] = self.sla(raw)
        return raw

    @staticmethod
    def sla(raw: Mapping[str, Any]) -> dict[str, Any]:
        """GLPI's own TTO/TTR verdicts: met unless GLPI flags the deadline exceeded.

        None when the ticket has no such deadline. GLPI moves ``time_to_resolve``
        by the time spent Pending, so its verdict already leaves waiting out.
        """
        utc = raw["utc"]
        tto = None if not utc.get("time_to_own") else raw.get("tto_exceeded")
        ttr = None if not utc.get("time_to_resolve") else raw.get("ttr_exceeded")
        return {
            "response_met": None if tto is None else not tto,
            "resolution_met": None if ttr is None else not ttr,
        }
