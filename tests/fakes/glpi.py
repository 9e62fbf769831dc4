"""A fake GLPI legacy REST API (``apirest.php``), faithful to what the connector relies on.

In-memory tickets generated deterministically (Chinese and Latin requesters,
HTML-encoded text as GLPI 10 returns it, status logs with pending periods and
reopens; a solution's addition logged on its ticket as GLPI logs a sub-item,
``linked_action`` 17 with the solution's id) in a server zone with DST
(Europe/Paris by default). Implements initSession (user token and Basic),
the App-Token check, session expiry, killSession, changeActiveEntities,
getFullSession/getMyProfiles/getActiveEntities, ``getMultipleItems`` (Ticket, User and ITILSolution
lines, ``with_logs`` giving ``_logs`` keyed by log id, all or nothing), ``/search/User`` (login
and id criteria, forcedisplay), ``/search/Ticket`` (option 4 lists the
requesters' logins; criteria on fields 1, 2, 12, 19
linked by AND/OR/AND NOT/OR NOT, the status values ``all``/``notold``/
``notclosed``/``old``/``process``; sort; ``range`` with 200/206,
``Content-Range``, ``Accept-Range`` and ``ERROR_RANGE_EXCEED_TOTAL``), with
GLPI's defaults: a search without criteria gets Ticket's default search
(status ``notold``: solved and closed tickets are left out, sorted by
``date_mod`` descending), and only ``is_deleted=1`` shows the trash, which a
normal search leaves out. Ticket, its Ticket_User/Log/ITILSolution/
ITILFollowup/Ticket_Ticket sub-items (paged as getItems pages: ``range``
default ``0-49``, 206, ``Content-Range``), User and UserEmail, Ticket and
Ticket_Ticket creation, ITILFollowup and ITILSolution adds (a solution
moves the ticket to 5 Solved; refused on a solved or closed ticket).
Errors are GLPI's ``["ERROR_…", "message"]`` arrays.

Tests drive it through :class:`FakeGlpi`: ``now`` is the server's clock
(``advance``), ``modify``/``close``/``trash`` change tickets, ``expire_sessions``,
``burst`` (429s with Retry-After), ``latency`` (seconds per request),
``lose_next_create`` (the ticket is created but the answer is a 502),
``followup`` (a technician's followup, private or public).
"""

from __future__ import annotations

import asyncio
import base64
import html
import itertools
import random
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

APP_TOKEN = "fake-app-token-0123"
USER_TOKEN = "fake-user-token-4567"
LOGIN = ("glpi-api", "s3cret-pässword")
DST_END = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # Europe/Paris: 03:00 CEST -> 02:00 CET

ENTITIES = {0: "Root entity", 1: "Root entity > Paris", 2: "Root entity > 上海"}
PARENT = {1: 0, 2: 0}
CATEGORIES = {1: "Réseau > VPN", 2: "Matériel > Imprimante", 3: "邮件 > Outlook"}
PEOPLE = [
    # login, firstname, realname, phone, mobile, emails
    ("wang.fang", "芳", "王", "+86 21 5555 0101", "+86 138 0013 8000", ["wang.fang@example.cn"]),
    ("li.na", "娜", "李", "", "+86 139 0000 1234", []),
    ("jose.muller", "José", "Müller", "+33 1 23 45 67 89", "", ["jose@example.fr"]),
    ("zoe.obrien", "Zoë", "O'Brien", "", "+33 6 12 34 56 78", ["zoe@example.ie", "z@old.ie"]),
    ("zhang.wei", "伟", "张", "", "", ["张伟@例子.中国"]),
]
SCENARIOS = [
    [1],
    [1, 2],
    [1, 2, 5],
    [1, 2, 4, 2, 5, 6],  # a pending period
    [1, 2, 5, 2, 5],  # solved, reopened, solved again
    [1, 2, 5, 6],
    [1, 4, 2, 5],
]


STATUS_SETS = {  # Ticket::getAllStatusArray(true): the search's special status values
    "all": {1, 2, 3, 4, 5, 6},
    "notold": {1, 2, 3, 4},
    "notclosed": {1, 2, 3, 4, 5},
    "old": {5, 6},
    "process": {2, 3},
}
DEFAULT_CRITERION = {"field": "12", "searchtype": "equals", "value": "notold"}
"""Ticket's default search (getDefaultSearchRequest, a profile with READALL): not solved."""


def enc(text: str) -> str:
    """Text as GLPI 10 returns it: HTML entities, apostrophes as ``&#039;``."""
    return html.escape(text, quote=True).replace("&#x27;", "&#039;")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse([code, message], status_code=status)


@dataclass
class FakeGlpi:
    """The fake server's state and controls (see the module docstring)."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    now: datetime = datetime(2026, 10, 28, 12, 0, tzinfo=UTC)
    app_token: str | None = APP_TOKEN
    latency: float = 0.0
    max_range: int = 990
    burst: int = 0
    retry_after: float = 2.0
    lose_next_create: bool = False
    deny_tickets: bool = False
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    ticket_users: list[dict[str, Any]] = field(default_factory=list)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    user_emails: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    solutions: list[dict[str, Any]] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    truth: dict[int, list[tuple[datetime, int]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _indexes: dict[int, tuple[int, dict[int, list[dict[str, Any]]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- clock and data ----------------------------------------------------------

    def naive(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def _log(self, ticket_id: int, at: datetime, option: int, old: Any, new: Any) -> None:
        self.logs.append({
            "id": next(self._ids), "itemtype": "Ticket", "items_id": ticket_id,
            "itemtype_link": "", "linked_action": 0, "user_name": "tech (2)",
            "date_mod": self.naive(at), "id_search_option": option,
            "old_value": str(old), "new_value": str(new),
        })  # fmt: skip

    def generate(
        self, count: int, seed: str = "glpi", start: datetime | None = None, days: int = 6
    ) -> None:
        """``count`` tickets opened over the ``days`` days from ``start`` (across the DST end)."""
        rng = random.Random(seed)
        start = start or datetime(2026, 10, 22, 6, 0, tzinfo=UTC)
        for n, (login, first, real, phone, mobile, emails) in enumerate(PEOPLE, start=57):
            self.users[n] = {
                "id": n, "name": login, "firstname": enc(first), "realname": enc(real),
                "phone": phone, "phone2": "", "mobile": mobile, "is_active": 1,
            }  # fmt: skip
            for i, email in enumerate(emails):
                self.user_emails.append({"id": next(self._ids), "users_id": n,
                                         "is_default": int(i == 0), "email": email})  # fmt: skip
        user_ids = sorted(self.users)
        for i in range(count):
            created = start + timedelta(seconds=rng.randrange(0, days * 86400))
            if DST_END - timedelta(hours=1) <= created < DST_END + timedelta(hours=1):
                created += timedelta(hours=2)
            if i == 0:  # two status changes inside the repeated hour (naive 02:xx twice)
                created = DST_END - timedelta(minutes=50)
            self._make(i + 1, created, SCENARIOS[i % len(SCENARIOS)], rng, user_ids)
        self.now = max(self.now, *(self._last(t) for t in self.tickets)) + timedelta(minutes=1)

    def open_ticket(self, at: datetime | None = None) -> int:
        """A customer opens one more ticket (status New) at ``at`` (default: now)."""
        with self.lock:
            ticket_id = max(self.tickets, default=0) + 1
            users = sorted(self.users)
            self._make(ticket_id, at or self.now, [1], random.Random(ticket_id), users)
            return ticket_id

    def _last(self, ticket_id: int) -> datetime:
        return self.truth[ticket_id][-1][0]

    def _make(
        self, ticket_id: int, created: datetime, path: list[int], rng: random.Random, users: list
    ) -> None:
        name = ["Imprimante 2e étage bloquée", "VPN coupe toutes les 10 min",
                "邮箱无法同步", "Can't open O'Brien's share"][ticket_id % 4]  # fmt: skip
        t = {
            "id": ticket_id, "entities_id": ticket_id % 3, "name": enc(f"{name} #{ticket_id}"),
            "date": self.naive(created), "date_creation": self.naive(created),
            "content": enc(f"<p>Problème signalé : {name}</p><p>L'utilisateur attend.</p>"),
            "status": 1, "urgency": 1 + ticket_id % 5, "impact": 3,
            "priority": 1 + ticket_id % 6, "type": 1, "itilcategories_id": 1 + ticket_id % 3,
            "solvedate": None, "closedate": None, "is_deleted": 0,
            "time_to_own": self.naive(created + timedelta(hours=1)),
            "time_to_resolve": self.naive(created + timedelta(hours=8)),
            "takeintoaccount_delay_stat": 0, "solve_delay_stat": 0, "waiting_duration": 0,
            "begin_waiting_date": None,
        }  # fmt: skip
        self.tickets[ticket_id] = t
        self.truth[ticket_id] = [(created, 1)]
        if ticket_id % 11 == 5:
            self.ticket_users.append({"id": next(self._ids), "tickets_id": ticket_id,
                                      "users_id": 0, "type": 1,
                                      "alternative_email": "anonyme@example.fr"})  # fmt: skip
        else:
            self.ticket_users.append({"id": next(self._ids), "tickets_id": ticket_id,
                                      "users_id": users[ticket_id % len(users)], "type": 1,
                                      "alternative_email": ""})  # fmt: skip
        self.ticket_users.append({"id": next(self._ids), "tickets_id": ticket_id,
                                  "users_id": 2, "type": 2, "alternative_email": ""})  # fmt: skip
        at = created
        if ticket_id == 1:  # 02:10 CEST, 02:40 CEST, then 02:20 CET: naive time goes back
            path, steps = [1, 2, 5], [30, 40]
        else:
            steps = [5 + rng.randrange(0, 240) for _ in path[1:]]
        for status, minutes in zip(path[1:], steps, strict=True):
            at = at + timedelta(minutes=minutes)
            if ticket_id != 1 and DST_END - timedelta(hours=1) <= at < DST_END + timedelta(hours=1):
                at += timedelta(hours=2)  # a lone event in the repeated hour is ambiguous
            self._set_status(ticket_id, status, at)
        t["date_mod"] = self.naive(at)

    def _set_status(self, ticket_id: int, status: int, at: datetime) -> None:
        t = self.tickets[ticket_id]
        old = t["status"]
        if old == status:
            return
        self._log(ticket_id, at, 12, old, status)
        created = self.truth[ticket_id][0][0]
        if old == 1:
            t["takeintoaccount_delay_stat"] = int((at - created).total_seconds())
        if old == 4 and t["begin_waiting_date"]:
            began = datetime.fromisoformat(t["begin_waiting_date"]).replace(tzinfo=self.tz)
            waited = int((at - began).total_seconds())
            t["waiting_duration"] += waited
            ttr = datetime.fromisoformat(t["time_to_resolve"]).replace(tzinfo=self.tz)
            t["time_to_resolve"] = self.naive(ttr + timedelta(seconds=waited))  # GLPI's shift
            t["begin_waiting_date"] = None
        if status == 4:
            t["begin_waiting_date"] = self.naive(at)
        if status == 5:
            t["solvedate"] = self.naive(at)
            t["solve_delay_stat"] = int((at - created).total_seconds())
            refused = any(s == 5 for _, s in self.truth[ticket_id])
            self.solutions.append({
                "id": next(self._ids), "itemtype": "Ticket", "items_id": ticket_id,
                "content": enc("<p>Redémarrage du service d'impression</p>"),
                "date_creation": self.naive(at), "status": 2,
            })  # fmt: skip
            # CommonDBChild::post_addItem: the parent's history gets "add a sub-item"
            # (Log::HISTORY_ADD_SUBITEM, 17), its new value the child's getNameID (forceid)
            self.logs.append({
                "id": next(self._ids), "itemtype": "Ticket", "items_id": ticket_id,
                "itemtype_link": "ITILSolution", "linked_action": 17, "user_name": "tech (2)",
                "date_mod": self.naive(at), "id_search_option": 0, "old_value": "",
                "new_value": f"N/A ({self.solutions[-1]['id']})",
            })  # fmt: skip
            if refused:
                for s in self.solutions:
                    if s["items_id"] == ticket_id and s["id"] != self.solutions[-1]["id"]:
                        s["status"] = 4
        if status == 6:
            t["closedate"] = self.naive(at)
            for s in self.solutions:
                if s["items_id"] == ticket_id and s["status"] == 2:
                    s["status"] = 3
        if old in (5, 6) and status in (1, 2, 3, 4):
            t["solvedate"], t["closedate"] = None, None
        t["status"] = status
        t["date_mod"] = self.naive(at)
        self.truth[ticket_id].append((at, status))

    def modify(self, ticket_id: int, *, status: int | None = None, at: datetime | None = None,
               name: str | None = None) -> None:  # fmt: skip
        """Change a ticket at ``at`` (default: now); its ``date_mod`` becomes that second."""
        with self.lock:
            when = at or self.now
            if status is not None:
                self._set_status(ticket_id, status, when)
            if name is not None:
                self._log(ticket_id, when, 1, self.tickets[ticket_id]["name"], enc(name))
                self.tickets[ticket_id]["name"] = enc(name)
            self.tickets[ticket_id]["date_mod"] = self.naive(when)

    def close(self, ticket_id: int, at: datetime | None = None) -> None:
        """Solve (if needed) and close a ticket, as a technician would."""
        when = at or self.now
        if self.tickets[ticket_id]["status"] != 5:
            self.modify(ticket_id, status=5, at=when)
        self.modify(ticket_id, status=6, at=when)

    def trash(self, ticket_id: int, at: datetime | None = None) -> None:
        """Move a ticket to the trash as GLPI does: ``is_deleted`` 1, ``date_mod`` moves."""
        with self.lock:
            when = at or self.now
            t = self.tickets[ticket_id]
            t["is_deleted"] = 1
            t["date_mod"] = self.naive(when)
            self.logs.append(
                {
                    "id": next(self._ids),
                    "itemtype": "Ticket",
                    "items_id": ticket_id,
                    "itemtype_link": "",
                    "linked_action": 13,
                    "user_name": "tech (2)",
                    "date_mod": self.naive(when),
                    "id_search_option": 0,
                    "old_value": "",
                    "new_value": "",
                }
            )  # fmt: skip  (Log::HISTORY_DELETE_ITEM)

    def expire_sessions(self) -> None:
        """Every open session becomes invalid (PHP garbage-collected them)."""
        with self.lock:
            self.sessions.clear()

    def category_of(self, history: list[tuple[datetime, int]]) -> list[int]:
        return [s for _, s in history]

    # -- HTTP --------------------------------------------------------------------

    def app(self) -> Starlette:
        r = "/apirest.php"
        routes = [
            Route(f"{r}/initSession", self.init_session, methods=["GET"]),
            Route(f"{r}/killSession", self.kill_session, methods=["GET"]),
            Route(f"{r}/changeActiveEntities", self.change_entities, methods=["POST"]),
            Route(f"{r}/getFullSession", self.full_session, methods=["GET"]),
            Route(f"{r}/getMyProfiles", self.my_profiles, methods=["GET"]),
            Route(f"{r}/getActiveEntities", self.active_entities, methods=["GET"]),
            Route(f"{r}/search/Ticket", self.search, methods=["GET"]),
            Route(f"{r}/search/User", self.search_users, methods=["GET"]),
            Route(f"{r}/getMultipleItems", self.multiple_items, methods=["GET"]),
            Route(f"{r}/Ticket", self.create_ticket, methods=["POST"]),
            Route(f"{r}/Ticket_Ticket", self.create_link, methods=["POST"]),
            Route(f"{r}/ITILFollowup", self.add_followup, methods=["POST"]),
            Route(f"{r}/ITILSolution", self.add_solution, methods=["POST"]),
            Route(f"{r}/Ticket/{{id:int}}", self.get_ticket, methods=["GET"]),
            Route(f"{r}/Ticket/{{id:int}}/{{sub}}", self.ticket_sub, methods=["GET"]),
            Route(f"{r}/User/{{id:int}}", self.get_user, methods=["GET"]),
            Route(f"{r}/User/{{id:int}}/UserEmail", self.user_emails_of, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    async def _gate(self, request: Request, session: bool = True) -> JSONResponse | dict:
        """Latency, 429 bursts, App-Token and Session-Token checks (None: go on)."""
        self.calls[request.url.path.split("apirest.php", 1)[-1]] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        with self.lock:
            if self.burst > 0:
                self.burst -= 1
                resp = error(429, "ERROR_TOO_MANY_REQUESTS", "slow down")
                resp.headers["Retry-After"] = str(self.retry_after)
                return resp
        if self.app_token is not None:
            given = request.headers.get("App-Token") or request.query_params.get("app_token")
            if not given:
                return error(400, "ERROR_APP_TOKEN_PARAMETERS_MISSING",
                             "missing parameter app_token")  # fmt: skip
            if given != self.app_token:
                return error(400, "ERROR_WRONG_APP_TOKEN_PARAMETER",
                             "parameter app_token seems wrong")  # fmt: skip
        if not session:
            return {}
        token = request.headers.get("Session-Token") or request.query_params.get("session_token")
        if not token:
            return error(400, "ERROR_SESSION_TOKEN_MISSING", "parameter session_token is missing")
        with self.lock:
            state = self.sessions.get(token)
        if state is None:
            return error(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid")
        return state

    async def init_session(self, request: Request) -> Response:
        gate = await self._gate(request, session=False)
        if isinstance(gate, Response):
            return gate
        auth = request.headers.get("Authorization", "")
        if auth.startswith("user_token "):
            if auth[len("user_token ") :].strip() != USER_TOKEN:
                return error(
                    401, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid"
                )
        elif auth.startswith("Basic "):
            try:
                login, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                login, password = "", ""
            if (login, password) != LOGIN:
                return error(401, "ERROR_GLPI_LOGIN", "Incorrect username or password")
        else:
            return error(400, "ERROR_LOGIN_PARAMETERS_MISSING", "missing login parameters")
        token = secrets.token_hex(13)
        with self.lock:
            self.sessions[token] = {"entity": 0, "recursive": True}
        return JSONResponse({"session_token": token})

    async def kill_session(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        with self.lock:
            self.sessions.pop(request.headers.get("Session-Token", ""), None)
        return JSONResponse(True)

    async def change_entities(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        body = (await request.json()).get("entities_id")
        entity = None if body == "all" else int(body)
        if entity is not None and entity not in ENTITIES:
            return error(400, "ERROR_ITEM_NOT_FOUND", "entity not found")
        gate["entity"] = entity if entity is not None else 0
        return JSONResponse(True)

    async def full_session(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        return JSONResponse(
            {
                "session": {
                    "glpiID": 7,
                    "glpiname": LOGIN[0],
                    "glpiactiveprofile": {"id": 4, "name": "Technician"},
                }
            }
        )

    async def my_profiles(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        return JSONResponse({"myprofiles": [{"id": 4, "name": "Technician"},
                                            {"id": 1, "name": "Self-Service"}]})  # fmt: skip

    async def active_entities(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        return JSONResponse(
            {
                "active_entity": {
                    "id": gate["entity"],
                    "active_entity_recursive": gate["recursive"],
                    "active_entities": [{"id": e} for e in ENTITIES],
                }
            }
        )

    def _visible(self, state: dict[str, Any], ticket: dict[str, Any]) -> bool:
        """In the session's active entities (trashed or not: getItem shows both)."""
        entity = ticket["entities_id"]
        while True:
            if entity == state["entity"]:
                return True
            if entity not in PARENT or not state["recursive"]:
                return False
            entity = PARENT[entity]

    def _row(self, t: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        ttr = t["time_to_resolve"]
        solved_late = bool(ttr and t["solvedate"] and t["solvedate"] > ttr)
        unsolved_late = bool(ttr and not t["solvedate"] and self.naive(self.now) > ttr
                             and t["status"] != 4)  # fmt: skip
        tto = t["time_to_own"]
        took = t["takeintoaccount_delay_stat"]
        owned_at = None
        if took:
            created = datetime.fromisoformat(t["date"]).replace(tzinfo=self.tz)
            owned_at = self.naive(created + timedelta(seconds=took))
        values = {
            "1": t["name"], "2": t["id"], "3": t["priority"],
            "7": CATEGORIES.get(t["itilcategories_id"]),
            "10": t["urgency"], "12": t["status"], "14": t["type"], "15": t["date"],
            "16": t["closedate"], "17": t["solvedate"], "18": ttr, "19": t["date_mod"],
            "21": t["content"], "80": ENTITIES[t["entities_id"]],
            "82": int(solved_late or unsolved_late), "150": took,
            "153": t["waiting_duration"], "154": t["solve_delay_stat"], "155": tto,
            "159": int(bool(tto and owned_at and owned_at > tto)),
            "4": self._requester_logins(t["id"]),
        }  # fmt: skip
        return {k: v for k, v in values.items() if k in fields or k in ("1", "2", "80")}

    def _requester_logins(self, ticket_id: int) -> str | list[str] | None:
        """Search option 4 (Requester): the requester users' logins; one is a bare string.

        A multi-valued column lists one value per linked row; an anonymous
        requester (``users_id`` 0, only an ``alternative_email``) has no user
        and shows nothing.
        """
        logins = [
            self.users[u["users_id"]]["name"]
            for u in sorted(
                self._by_ticket(self.ticket_users, "tickets_id", ticket_id), key=lambda u: u["id"]
            )
            if u["type"] == 1 and u["users_id"] in self.users
        ]
        if not logins:
            return None
        return logins[0] if len(logins) == 1 else logins

    def _by_ticket(self, rows: list[dict[str, Any]], key: str, ticket_id: int) -> list[dict]:
        """The rows of an append-only list that belong to a ticket (an index kept per list,
        rebuilt when the list grew: a search page must not scan every row per ticket)."""
        index = self._indexes.get(id(rows))
        if index is None or index[0] != len(rows):
            by: dict[int, list[dict[str, Any]]] = {}
            for r in rows:
                by.setdefault(r[key], []).append(r)
            index = (len(rows), by)
            self._indexes[id(rows)] = index
        return index[1].get(ticket_id, [])

    def _item(self, gate: dict[str, Any], itemtype: str, item_id: int,
              with_logs: bool) -> dict[str, Any] | None:  # fmt: skip
        """What ``GET /:itemtype/:id`` returns (Ticket, User, ITILSolution), ``_logs`` when
        asked."""
        if itemtype == "Ticket":
            t = self._ticket(gate, item_id)
            if t is None:
                return None
            body = {k: v for k, v in t.items() if k != "begin_waiting_date"}
            if with_logs:  # getAllDataFromTable('glpi_logs'): rows keyed by their id
                body["_logs"] = {
                    str(g["id"]): dict(g) for g in self._by_ticket(self.logs, "items_id", item_id)
                }
            return body
        if itemtype == "User":
            user = self.users.get(item_id)
            return dict(user) if user is not None else None
        if itemtype == "ITILSolution":
            found = next((x for x in self.solutions if x["id"] == item_id), None)
            if found is None or self._ticket(gate, found["items_id"]) is None:
                return None
            return dict(found)
        return None

    async def multiple_items(self, request: Request) -> Response:
        """``GET /getMultipleItems?items[i][itemtype]=…&items[i][items_id]=…``: Get an item
        for each line, in order; one missing item fails the whole call (404)."""
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        lines: dict[str, dict[str, str]] = {}
        for key, value in request.query_params.multi_items():
            if key.startswith("items["):
                idx, _, rest = key[len("items[") :].partition("]")
                lines.setdefault(idx, {})[rest.strip("[]")] = value
        if not lines:
            return error(400, "ERROR_BAD_ARRAY", "items parameter is mandatory")
        with_logs = request.query_params.get("with_logs", "false") in ("1", "true")
        out = []
        with self.lock:
            for idx in sorted(lines, key=int):
                line = lines[idx]
                item = self._item(gate, line.get("itemtype", ""), int(line.get("items_id", -1)),
                                  with_logs)  # fmt: skip
                if item is None:
                    return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
                out.append(item)
        return JSONResponse(out)

    def _user_row(self, user: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        emails = sorted((e for e in self.user_emails if e["users_id"] == user["id"]),
                        key=lambda e: (-e["is_default"], e["id"]))  # fmt: skip
        values = {
            "1": user["name"], "2": user["id"], "5": [e["email"] for e in emails] or None,
            "6": user["phone"], "9": user["firstname"], "10": user["phone2"],
            "11": user["mobile"], "34": user["realname"],
        }  # fmt: skip
        return {k: v for k, v in values.items() if k in fields or k in ("1", "2", "80")}

    async def search_users(self, request: Request) -> Response:
        """``GET /search/User``: criteria on 1 (login: contains with ^/$ anchors, equals)
        and 2 (id), linked by AND/OR; forcedisplay; range with 200/206."""
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        q = request.query_params
        crit: dict[str, dict[str, str]] = {}
        fields = set()
        for key, value in q.multi_items():
            if key.startswith("criteria["):
                idx, _, rest = key[len("criteria[") :].partition("]")
                crit.setdefault(idx, {})[rest.strip("[]")] = value
            elif key.startswith("forcedisplay["):
                fields.add(value)
        criteria = [crit[k] for k in sorted(crit, key=int)]

        def hit(user: dict[str, Any], c: dict[str, str]) -> bool:
            have = str(user["name"] if c.get("field") == "1" else user["id"])
            value, kind = c.get("value", ""), c.get("searchtype")
            if kind == "equals":
                return have == value
            core = value.removeprefix("^").removesuffix("$")
            if value.startswith("^") and value.endswith("$"):
                return have.lower() == core.lower()
            if value.startswith("^"):
                return have.lower().startswith(core.lower())
            return core.lower() in have.lower()

        def matches(user: dict[str, Any]) -> bool:
            groups: list[list[bool]] = []
            for i, c in enumerate(criteria):
                link = (c.get("link") or "AND").upper() if i else "AND"
                h = hit(user, c)
                if link.endswith("NOT"):
                    h = not h
                if i == 0 or link.startswith("OR"):
                    groups.append([h])
                else:
                    groups[-1].append(h)
            return not groups or any(all(g) for g in groups)

        with self.lock:
            rows = sorted((u for u in self.users.values() if matches(u)), key=lambda u: u["name"])
            total = len(rows)
            start_s, _, end_s = q.get("range", "0-49").partition("-")
            start, end = int(start_s), int(end_s)
            if start > total or total == 0:
                return error(400, "ERROR_RANGE_EXCEED_TOTAL",
                             f"Provided range exceed total count of data: {total}")  # fmt: skip
            end = min(end, start + self.max_range - 1, total - 1)
            page = [self._user_row(u, fields) for u in rows[start : end + 1]]
        content_range = f"{start}-{end}/{total}"
        body = {"totalcount": total, "count": len(page), "content-range": content_range,
                "data": page}  # fmt: skip
        return JSONResponse(body, status_code=206 if end + 1 < total else 200,
                            headers={"Content-Range": content_range,
                                     "Accept-Range": f"User {self.max_range}"})  # fmt: skip

    async def search(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        if self.deny_tickets:
            return error(
                401, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action."
            )
        q = request.query_params
        crit: dict[str, dict[str, str]] = {}
        fields = set()
        for key, value in q.multi_items():
            if key.startswith("criteria["):
                idx, _, rest = key[len("criteria[") :].partition("]")
                crit.setdefault(idx, {})[rest.strip("[]")] = value
            elif key.startswith("forcedisplay["):
                fields.add(value)
        criteria = [crit[k] for k in sorted(crit, key=int)]
        default_sort = "1"
        if not criteria:  # Search::manageParams: Ticket::getDefaultSearchRequest()
            criteria = [dict(DEFAULT_CRITERION)]
            default_sort = "19"
        trash = q.get("is_deleted", "0") in ("1", "true")  # Search: is_deleted = <param>
        with self.lock:
            rows = [
                t
                for t in self.tickets.values()
                if self._visible(gate, t) and bool(t["is_deleted"]) == trash
                and self._matches(t, criteria)
            ]  # fmt: skip
            sort = q.get("sort", default_sort)
            order = q.get("order", "ASC" if crit else "DESC")
            key = {"19": lambda t: (t["date_mod"], t["id"]), "2": lambda t: (t["id"],)}.get(
                sort, lambda t: (t["name"], t["id"])
            )
            rows.sort(key=key, reverse=order == "DESC")
            total = len(rows)
            start_s, _, end_s = q.get("range", "0-49").partition("-")
            start, end = int(start_s), int(end_s)
            if start > total:
                return error(400, "ERROR_RANGE_EXCEED_TOTAL",
                             f"Provided range exceed total count of data: {total}")  # fmt: skip
            end = min(end, start + self.max_range - 1, total - 1)
            page = [self._row(t, fields) for t in rows[start : end + 1]]
        content_range = f"{start}-{end}/{total}"
        body: dict[str, Any] = {"totalcount": total, "count": len(page), "sort": [int(sort)],
                                "order": [order], "content-range": content_range}  # fmt: skip
        if page:
            body["data"] = page
        status = 206 if end + 1 < total else 200
        return JSONResponse(body, status_code=status,
                            headers={"Content-Range": content_range,
                                     "Accept-Range": f"Ticket {self.max_range}"})  # fmt: skip

    def _matches(self, t: dict[str, Any], criteria: list[dict[str, str]]) -> bool:
        """Criteria joined as GLPI's SQL does: NOT binds to its criterion, AND before OR."""
        groups: list[list[bool]] = []
        for i, c in enumerate(criteria):
            link = (c.get("link") or "AND").upper() if i else "AND"
            hit = self._match(t, c)
            if link.endswith("NOT"):
                hit = not hit
            if i == 0 or link.startswith("OR"):
                groups.append([hit])
            else:
                groups[-1].append(hit)
        return any(all(g) for g in groups)

    def _match(self, t: dict[str, Any], c: dict[str, str]) -> bool:
        field, kind, value = c.get("field"), c.get("searchtype"), c.get("value", "")
        column = {"19": "date_mod", "1": "name", "2": "id", "12": "status"}.get(field or "")
        if column is None:
            return True
        have = t[column]
        if column == "status" and kind == "equals" and value in STATUS_SETS:
            return int(have) in STATUS_SETS[value]
        if kind == "morethan":
            return str(have) > value
        if kind == "lessthan":
            return str(have) < value
        if kind == "contains":
            return value.lower() in str(have).lower()
        if kind == "equals":
            return str(have) == value
        return True

    def _ticket(self, gate: dict[str, Any], ticket_id: int) -> dict[str, Any] | None:
        t = self.tickets.get(ticket_id)
        return t if t is not None and self._visible(gate, t) else None

    async def get_ticket(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        with self.lock:
            t = self._ticket(gate, request.path_params["id"])
            if t is None:
                return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
            body = {k: v for k, v in t.items() if k != "begin_waiting_date"}
        return JSONResponse(body, headers={"Last-Modified": t["date_mod"]})

    async def ticket_sub(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        ticket_id, sub = request.path_params["id"], request.path_params["sub"]
        with self.lock:
            if self._ticket(gate, ticket_id) is None:
                return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
            if sub == "Ticket_User":
                rows = [u for u in self.ticket_users if u["tickets_id"] == ticket_id]
            elif sub == "Log":
                rows = sorted(
                    (g for g in self.logs if g["items_id"] == ticket_id), key=lambda g: -g["id"]
                )  # fmt: skip  (GLPI lists newest first)
            elif sub == "ITILSolution":
                rows = [s for s in self.solutions if s["items_id"] == ticket_id]
            elif sub == "ITILFollowup":
                rows = [f for f in self.followups if f["items_id"] == ticket_id]
            elif sub == "Ticket_Ticket":
                rows = [
                    k for k in self.links if ticket_id in (k["tickets_id_1"], k["tickets_id_2"])
                ]
            else:
                return error(400, "ERROR_ITEM_NOT_FOUND", f"unknown sub-item type {sub}")
            rows = [dict(r) for r in rows]
        return self._collection(request, sub, rows)

    def _collection(self, request: Request, itemtype: str, rows: list[dict]) -> Response:
        """A collection as GLPI's getItems answers it: ``range`` (inclusive, default
        ``0-49``, capped at ``max_range``), 206 while rows remain, ``Content-Range`` when
        there are rows, ``Accept-Range``; a start past the total is ERROR_RANGE_EXCEED_TOTAL."""
        total = len(rows)
        start_s, _, end_s = request.query_params.get("range", "0-49").partition("-")
        start, end = int(start_s), int(end_s)
        if start > total:
            return error(400, "ERROR_RANGE_EXCEED_TOTAL",
                         f"Provided range exceed total count of data: {total}")  # fmt: skip
        end = min(end, start + self.max_range - 1, total - 1)
        headers = {"Accept-Range": f"{itemtype} {self.max_range}"}
        if total:
            headers["Content-Range"] = f"{start}-{end}/{total}"
        status = 206 if end - start + 1 < total else 200
        return JSONResponse(rows[start : end + 1], status_code=status, headers=headers)

    async def get_user(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        user = self.users.get(request.path_params["id"])
        if user is None:
            return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        return JSONResponse(user)

    async def user_emails_of(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        uid = request.path_params["id"]
        return JSONResponse([e for e in self.user_emails if e["users_id"] == uid])

    async def create_ticket(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        data = (await request.json()).get("input")
        if not isinstance(data, dict) or not data.get("name"):
            return error(400, "ERROR_GLPI_ADD", "input with a name is required")
        with self.lock:
            ticket_id = max(self.tickets, default=0) + 1000
            now = self.naive(self.now)
            self.tickets[ticket_id] = {
                "id": ticket_id, "entities_id": int(data.get("entities_id", 0)),
                "name": enc(data["name"]), "content": enc(data.get("content", "")),
                "date": now, "date_creation": now, "date_mod": now, "status": 1,
                "urgency": int(data.get("urgency", 3)), "impact": 3, "priority": 3,
                "type": int(data.get("type", 1)),
                "itilcategories_id": int(data.get("itilcategories_id", 0)),
                "solvedate": None, "closedate": None, "is_deleted": 0, "time_to_own": None,
                "time_to_resolve": None, "takeintoaccount_delay_stat": 0,
                "solve_delay_stat": 0, "waiting_duration": 0, "begin_waiting_date": None,
            }  # fmt: skip
            self.truth[ticket_id] = [(self.now, 1)]
            lose, self.lose_next_create = self.lose_next_create, False
        if lose:
            return error(502, "ERROR_PROXY", "Bad gateway (the ticket was created)")
        return JSONResponse({"id": ticket_id, "message": ""}, status_code=201,
                            headers={"Location": f"{request.url}/{ticket_id}"})  # fmt: skip

    async def _itil_input(
        self, request: Request
    ) -> tuple[dict[str, Any], dict[str, Any]] | JSONResponse:
        """The ``input`` of an ITILFollowup/ITILSolution add and the ticket it is for."""
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        data = (await request.json()).get("input")
        if not isinstance(data, dict) or data.get("itemtype") != "Ticket":
            return error(400, "ERROR_GLPI_ADD", "itemtype and items_id are required")
        t = self._ticket(gate, int(data.get("items_id") or 0))
        if t is None or not str(data.get("content") or "").strip():
            return error(400, "ERROR_GLPI_ADD", "Item not found or empty content")
        return data, t

    async def add_followup(self, request: Request) -> Response:
        """``POST /ITILFollowup``: a followup stored (HTML-encoded) on a ticket; 201."""
        found = await self._itil_input(request)
        if isinstance(found, Response):
            return found
        data, t = found
        with self.lock:
            row = self._followup(t, str(data["content"]), self.now,
                                 bool(int(data.get("is_private") or 0)))  # fmt: skip
        return JSONResponse({"id": row["id"], "message": ""}, status_code=201)

    def _followup(self, t: dict[str, Any], content: str, at: datetime, private: bool) -> dict:
        row = {"id": next(self._ids), "itemtype": "Ticket", "items_id": t["id"],
               "content": enc(content), "is_private": int(private), "users_id": 7,
               "date": self.naive(at), "date_creation": self.naive(at),
               "date_mod": self.naive(at)}  # fmt: skip
        self.followups.append(row)
        t["date_mod"] = self.naive(max(at, self.now))
        return row

    def followup(
        self, ticket_id: int, html_content: str, at: datetime | None = None, private: bool = False
    ) -> int:
        """A technician's followup on a ticket (its rich text as GLPI stores it); its id."""
        with self.lock:
            return int(self._followup(self.tickets[ticket_id], html_content, at or self.now,
                                      private)["id"])  # fmt: skip

    async def add_solution(self, request: Request) -> Response:
        """``POST /ITILSolution``: the ticket becomes 5 Solved; refused when solved or closed."""
        found = await self._itil_input(request)
        if isinstance(found, Response):
            return found
        data, t = found
        with self.lock:
            if t["status"] in (5, 6):
                return error(400, "ERROR_GLPI_ADD", "The ticket is already solved or closed")
            self._set_status(t["id"], 5, self.now)
            solution = self.solutions[-1]  # the one _set_status records
            solution["content"] = enc(str(data["content"]))
        return JSONResponse({"id": solution["id"], "message": ""}, status_code=201)

    async def create_link(self, request: Request) -> Response:
        gate = await self._gate(request)
        if isinstance(gate, Response):
            return gate
        data = (await request.json()).get("input") or {}
        with self.lock:
            ends = (int(data.get("tickets_id_1", 0)), int(data.get("tickets_id_2", 0)))
            if any(self._ticket(gate, e) is None for e in ends):
                return error(400, "ERROR_GLPI_ADD", "linked ticket not found")
            link = {"id": next(self._ids), "tickets_id_1": ends[0], "tickets_id_2": ends[1],
                    "link": int(data.get("link", 1))}  # fmt: skip
            self.links.append(link)
        return JSONResponse({"id": link["id"], "message": ""}, status_code=201)
