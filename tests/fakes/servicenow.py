"""A fake ServiceNow instance: the Table API as documented, with its traps.

``/api/now/table/{table}`` and ``/api/now/v2/table/{table}`` (GET list,
GET one, POST, PATCH) over in-memory tables ``incident``, ``sys_user``,
``sys_audit``, ``sys_audit_delete``, ``task_sla`` and ``sys_journal_field``.
Values are strings, as the API gives them; instants are stored UTC
``YYYY-MM-DD HH:MM:SS``. Implemented as the documentation says:

* ``sysparm_query`` encoded queries: conditions joined by ``^``, ``^OR``
  binding to the condition before it, operators ``= != > >= < <= IN NOT IN
  STARTSWITH ENDSWITH LIKE NOT LIKE ISEMPTY ISNOTEMPTY``, ``ORDERBY<f>`` /
  ``ORDERBYDESC<f>``; a plain date literal is UTC (``javascript:`` values
  are refused here);
* ``sysparm_fields`` (dot-walking a reference, ``sla.name``),
  ``sysparm_limit`` (default 10,000) and ``sysparm_offset``, the ``Link``
  header (first/prev/next/last) and ``X-Total-Count`` (left out with
  ``sysparm_no_count=true``);
* ``sysparm_display_value=true``: instants in the API user's zone and date
  format, choice values as their localised labels (the trap qloop avoids by
  asking ``false``, the default); ``all``: each field as
  ``{"display_value": …, "value": …}``;
* ``max_url``: a request whose URL is longer is refused ``414`` (the request
  line limit of the proxies in front of an instance; off by default);
* offset paging over live data: a record updated between two pages moves
  in the sort and shifts the next page (``on_page`` lets a test update
  records between pages of the tables in ``paged_tables``);
* Basic auth and OAuth ``/oauth_token.do`` (password grant, refresh
  tokens); 429 with ``Retry-After`` and ServiceNow's error body (``burst``);
* deleting an incident writes ``sys_audit_delete`` with the record's XML
  ``payload``; state changes write ``sys_audit`` rows; ``work_notes`` and
  ``comments`` writes are journal entries in ``sys_journal_field``
  (``element``, ``element_id``, ``name``, ``value``, ``sys_created_on``),
  never values on the record (``journal`` adds one as a technician would);
* ``empty_list_404``: the unversioned API's 404 "No Record found" for a
  list query matching nothing (v2 answers ``200 []``).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

USER, PASSWORD = "qloop.integration", "s3cret-pw"
CLIENT_ID, CLIENT_SECRET = "cid-123", "csecret-456"
FMT = "%Y-%m-%d %H:%M:%S"
STATE_LABELS = {
    "1": "Nouveau",
    "2": "En cours",
    "3": "En attente",
    "6": "Résolu",
    "7": "Fermé",
    "8": "Annulé",
}
_OPS = "ISNOTEMPTY|ISEMPTY|NOT LIKE|LIKE|STARTSWITH|ENDSWITH|NOT IN|IN|>=|<=|!=|>|<|="
_COND = re.compile(rf"^([A-Za-z0-9_.]+?)({_OPS})(.*)$")
JOURNAL_FIELDS = ("comments", "work_notes")


def sn_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(FMT)


def _sys_id(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()  # an id, not a secret


def _test(value: str, op: str, arg: str) -> bool:
    if op == "=":
        return value == arg
    if op == "!=":
        return value != arg
    if op in (">", ">=", "<", "<="):
        if value == "":
            return False
        return {">": value > arg, ">=": value >= arg, "<": value < arg, "<=": value <= arg}[op]
    if op == "IN":
        return value in arg.split(",")
    if op == "NOT IN":
        return value not in arg.split(",")
    if op == "STARTSWITH":
        return value.startswith(arg)
    if op == "ENDSWITH":
        return value.endswith(arg)
    if op == "LIKE":
        return arg in value
    if op == "NOT LIKE":
        return arg not in value
    if op == "ISEMPTY":
        return value == ""
    return value != ""  # ISNOTEMPTY


class BadQuery(ValueError):
    pass


def parse_query(text: str) -> tuple[list[list[tuple[str, str, str]]], list[tuple[str, bool]]]:
    """(AND of OR-groups of conditions, ORDER BY fields) of an encoded query."""
    groups: list[list[tuple[str, str, str]]] = []
    order: list[tuple[str, bool]] = []
    for part in [p for p in text.split("^") if p]:
        if part.startswith("ORDERBYDESC"):
            order.append((part[11:], True))
            continue
        if part.startswith("ORDERBY"):
            order.append((part[7:], False))
            continue
        alt = part.startswith("OR") and bool(groups) and _COND.match(part[2:]) is not None
        match = _COND.match(part[2:] if alt else part)
        if match is None:
            raise BadQuery(part)
        field, op, arg = match.groups()
        if arg.startswith("javascript:"):
            raise BadQuery(f"{part}: scripts are not evaluated by this fake")
        if alt:
            groups[-1].append((field, op, arg))
        else:
            groups.append([(field, op, arg)])
    return groups, order


class FakeServiceNow:
    def __init__(self, *, user_zone: str = "Europe/Paris") -> None:
        self.tables: dict[str, dict[str, dict[str, str]]] = {
            t: {}
            for t in (
                "incident",
                "sys_user",
                "sys_audit",
                "sys_audit_delete",
                "task_sla",
                "sys_journal_field",
                "contract_sla",
            )
        }
        self.now = datetime(2026, 10, 29, 12, 0, tzinfo=UTC)
        self.user_zone = ZoneInfo(user_zone)
        self.calls: Counter[str] = Counter()
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.burst = 0
        self.on_page: Callable[[str, int], None] | None = None
        self.paged_tables = {"incident"}
        self.lose_next_create = False
        self.empty_list_404 = False
        self.max_url: int | None = None
        self.tokens: dict[str, str] = {}
        self.refresh_tokens: set[str] = set()
        self._lock = threading.RLock()
        self._seq = 10_000
        for sla, name in (("ttr", "Resolution time"), ("tto", "Response time")):
            self.tables["contract_sla"][_sys_id(sla)] = {"sys_id": _sys_id(sla), "name": name}

    # -- data -------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def add_user(self, name: str, phone: str = "", mobile: str = "", email: str = "") -> str:
        sys_id = _sys_id("user", name)
        self.tables["sys_user"][sys_id] = {
            "sys_id": sys_id,
            "name": name,
            "phone": phone,
            "mobile_phone": mobile,
            "email": email,
        }
        return sys_id

    def _audit(self, doc: dict[str, str], old: str, new: str, at: datetime) -> None:
        sys_id = _sys_id("audit", doc["sys_id"], len(self.tables["sys_audit"]))
        self.tables["sys_audit"][sys_id] = {
            "sys_id": sys_id,
            "tablename": "incident",
            "fieldname": "state",
            "documentkey": doc["sys_id"],
            "oldvalue": old,
            "newvalue": new,
            "sys_created_on": sn_time(at),
        }

    def insert(self, fields: dict[str, str], at: datetime | None = None) -> str:
        with self._lock:
            at = at or self.now
            self._seq += 1
            sys_id = _sys_id("inc", self._seq, fields.get("short_description"))
            doc = {
                "sys_id": sys_id,
                "number": f"INC{self._seq:07d}",
                "state": "1",
                "priority": "4",
                "impact": "3",
                "urgency": "3",
                "caller_id": "",
                "short_description": "",
                "description": "",
                "correlation_id": "",
                "opened_at": sn_time(at),
                "resolved_at": "",
                "closed_at": "",
                "sys_created_on": sn_time(at),
                "sys_updated_on": sn_time(at),
                "sys_mod_count": "0",
                "category": "inquiry",
                "company": "",
            }
            doc.update({k: str(v) for k, v in fields.items() if k not in JOURNAL_FIELDS})
            self.tables["incident"][sys_id] = doc
            self._audit(doc, "", doc["state"], at)
            for element in JOURNAL_FIELDS:
                if fields.get(element):
                    self.journal(sys_id, element, str(fields[element]), at)
            return sys_id

    def journal(
        self, sys_id: str, element: str, value: str, at: datetime | None = None,
        by: str = "itil.tech",
    ) -> str:  # fmt: skip
        """A journal entry (``comments`` or ``work_notes``) on incident ``sys_id``; its sys_id."""
        with self._lock:
            table = self.tables["sys_journal_field"]
            jid = _sys_id("journal", sys_id, len(table))
            table[jid] = {
                "sys_id": jid,
                "element_id": sys_id,
                "element": element,
                "name": "incident",
                "value": value,
                "sys_created_on": sn_time(at or self.now),
                "sys_created_by": by,
            }
            return jid

    def update(self, sys_id: str, at: datetime | None = None, **fields: str) -> None:
        with self._lock:
            at = at or self.now
            doc = self.tables["incident"][sys_id]
            for element in JOURNAL_FIELDS:  # journal fields: entries, not values on the record
                text = fields.pop(element, None)
                if text:
                    self.journal(sys_id, element, text, at)
            state = fields.get("state")
            if state and state != doc["state"]:
                self._audit(doc, doc["state"], state, at)
                if state == "6":
                    fields.setdefault("resolved_at", sn_time(at))
                if state == "7":
                    fields.setdefault("closed_at", sn_time(at))
            doc.update(fields)
            doc["sys_updated_on"] = sn_time(at)
            doc["sys_mod_count"] = str(int(doc["sys_mod_count"]) + 1)

    def delete(self, sys_id: str) -> None:
        with self._lock:
            doc = self.tables["incident"].pop(sys_id)
            inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in doc.items())
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?><record_update table="incident">'
                f'<incident action="DELETE">{inner}</incident></record_update>'
            )
            aid = _sys_id("deleted", sys_id)
            self.tables["sys_audit_delete"][aid] = {
                "sys_id": aid,
                "tablename": "incident",
                "documentkey": sys_id,
                "display_value": doc["number"],
                "payload": payload,
                "sys_created_on": sn_time(self.now),
            }

    def add_sla(
        self, task: str, kind: str, breached: bool, planned_end: datetime, stage: str
    ) -> None:
        sid = _sys_id("task_sla", task, kind)
        self.tables["task_sla"][sid] = {
            "sys_id": sid,
            "task": task,
            "sla": _sys_id(kind),
            "stage": stage,
            "has_breached": "true" if breached else "false",
            "planned_end_time": sn_time(planned_end),
            "active": "false" if stage == "completed" else "true",
        }

    def generate(self, n: int, *, seed: str, start: datetime, days: int) -> None:
        rng = random.Random(seed)
        people = [
            self.add_user("王芳", "+86 21 5555 0101", "+86 138 0013 8000", "wang@example.cn"),
            self.add_user("José Müller", "+33 1 23 45 67 89", "", "jose@example.fr"),
            self.add_user("Zoë O'Brien", "", "+33 6 12 34 56 78", ""),
        ]
        for i in range(n):
            opened = start + timedelta(minutes=rng.randrange(days * 24 * 60))
            sys_id = self.insert(
                {
                    "short_description": f"Incident {i}: VPN drops",
                    "caller_id": people[i % 3],
                    "priority": str(rng.choice("12345")),
                    "impact": "2",
                    "urgency": "2",
                },
                opened,
            )
            at = opened + timedelta(minutes=rng.randrange(5, 60))
            path = rng.choice([["2"], ["2", "3", "2", "6"], ["2", "6", "7"], ["2", "6"], ["8"]])
            for state in path:
                self.update(sys_id, at, state=state)
                at += timedelta(minutes=rng.randrange(10, 600))
            resolved = self.tables["incident"][sys_id]["resolved_at"]
            if resolved:
                planned = opened + timedelta(hours=8)
                done_at = datetime.strptime(resolved, FMT).replace(tzinfo=UTC)
                self.add_sla(sys_id, "ttr", done_at > planned, planned, "completed")

    # -- HTTP -------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            return (user, pw) == (USER, PASSWORD)
        return header.startswith("Bearer ") and header[7:] in self.tokens

    @staticmethod
    def _error(status: int, message: str, detail: str = "") -> JSONResponse:
        body = {"error": {"message": message, "detail": detail}, "status": "failure"}
        return JSONResponse(body, status_code=status)

    async def token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.calls["/oauth_token.do"] += 1
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = form.get("grant_type")
        if grant == "password":
            if (form.get("username"), form.get("password")) != (USER, PASSWORD):
                return JSONResponse({"error": "access_denied"}, status_code=401)
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return JSONResponse({"error": "invalid_grant"}, status_code=401)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        access, refresh = _sys_id("at", len(self.tokens)), _sys_id("rt", len(self.tokens))
        self.tokens[access] = USER
        self.refresh_tokens.add(refresh)
        return JSONResponse(
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": 1799,
            }
        )

    def _gate(self, request: Request) -> Response | None:
        self.calls[request.url.path] += 1
        if self.max_url is not None and len(str(request.url)) > self.max_url:
            return self._error(414, "Request-URI Too Long")
        if self.burst > 0:
            self.burst -= 1
            response = self._error(429, "Rate limit exceeded", "too many requests this hour")
            response.headers["Retry-After"] = "1"
            return response
        if not self._authorised(request):
            return self._error(
                401, "User Not Authenticated", "Required to provide Auth information"
            )
        return None

    def _shown(self, name: str, value: str) -> str:
        """A value as ``sysparm_display_value=true`` shows it (labels, the user's zone)."""
        if name == "state":
            return STATE_LABELS.get(value, value)
        if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", value):
            at = datetime.strptime(value, FMT).replace(tzinfo=UTC).astimezone(self.user_zone)
            return at.strftime("%d/%m/%Y %H:%M:%S")
        return value

    def _shape(
        self, doc: dict[str, str], fields: list[str] | None, display: bool | str
    ) -> dict[str, Any]:
        names = fields or list(doc)
        out: dict[str, Any] = {}
        for name in names:
            if "." in name:
                ref, _, sub = name.partition(".")
                target = self._referenced(doc.get(ref, ""))
                out[name] = (target or {}).get(sub, "")
                continue
            value = doc.get(name, "")
            if display == "all":
                out[name] = {"display_value": self._shown(name, value), "value": value}
            else:
                out[name] = self._shown(name, value) if display else value
        return out

    def _referenced(self, sys_id: str) -> dict[str, str] | None:
        for table in ("sys_user", "contract_sla", "incident"):
            if sys_id in self.tables[table]:
                return self.tables[table][sys_id]
        return None

    async def table(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        name = request.path_params["table"]
        if name not in self.tables:
            return self._error(400, "Invalid table " + name)
        sys_id = request.path_params.get("sys_id")
        if request.method == "POST":
            return await self._create(request, name)
        if request.method == "PATCH":
            return await self._patch(request, name, sys_id or "")
        params = dict(request.query_params)
        shown = params.get("sysparm_display_value", "false")
        display: bool | str = "all" if shown == "all" else shown == "true"
        fields = [f for f in params.get("sysparm_fields", "").split(",") if f] or None
        if sys_id is not None:
            doc = self.tables[name].get(sys_id)
            if doc is None:
                return self._error(404, "No Record found", "Record doesn't exist or ACL restricts")
            return JSONResponse({"result": self._shape(doc, fields, display)})
        self.queries.append((name, params))
        try:
            groups, order = parse_query(params.get("sysparm_query", ""))
        except BadQuery as exc:
            return self._error(400, "Invalid query", str(exc))
        with self._lock:
            rows = [
                dict(d)
                for d in self.tables[name].values()
                if all(any(_test(d.get(f, ""), op, a) for f, op, a in g) for g in groups)
            ]
        for field, desc in reversed(order):
            rows.sort(key=lambda d, f=field: d.get(f, ""), reverse=desc)
        limit = int(params.get("sysparm_limit", "10000"))
        offset = int(params.get("sysparm_offset", "0"))
        page = rows[offset : offset + limit]
        if not rows and self.empty_list_404 and "/v2/" not in request.url.path:
            return self._error(
                404,
                "No Record found",
                "Records matching query not found. Check query parameter or offset parameter",
            )
        if self.on_page is not None and name in self.paged_tables:
            self.on_page(name, offset)
        response = JSONResponse({"result": [self._shape(d, fields, display) for d in page]})
        if params.get("sysparm_no_count") != "true":
            response.headers["X-Total-Count"] = str(len(rows))
        response.headers["Link"] = self._links(request, params, offset, limit, len(rows))
        return response

    @staticmethod
    def _links(
        request: Request, params: dict[str, str], offset: int, limit: int, total: int
    ) -> str:
        base = str(request.url).split("?")[0]

        def at(off: int) -> str:
            return (
                base
                + "?"
                + urlencode({**params, "sysparm_offset": str(off), "sysparm_limit": str(limit)})
            )

        links = [f'<{at(0)}>;rel="first"']
        if offset > 0:
            links.append(f'<{at(max(offset - limit, 0))}>;rel="prev"')
        if offset + limit < total:
            links.append(f'<{at(offset + limit)}>;rel="next"')
        links.append(f'<{at(max((total - 1) // limit * limit, 0))}>;rel="last"')
        return ",".join(links)

    async def _create(self, request: Request, name: str) -> Response:
        if name != "incident":
            return self._error(403, "Operation Failed", "creates on " + name + " are not allowed")
        body = await request.json()
        sys_id = self.insert({k: str(v) for k, v in body.items()})
        if self.lose_next_create:
            self.lose_next_create = False
            return self._error(502, "Bad gateway")
        return JSONResponse({"result": self.tables["incident"][sys_id]}, status_code=201)

    async def _patch(self, request: Request, name: str, sys_id: str) -> Response:
        if sys_id not in self.tables.get(name, {}) or name != "incident":
            return self._error(404, "No Record found")
        body = await request.json()
        self.update(sys_id, **{k: str(v) for k, v in body.items()})
        return JSONResponse({"result": self.tables["incident"][sys_id]})

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PATCH"]
        routes = [Route("/oauth_token.do", self.token, methods=["POST"])]
        for prefix in ("/api/now/table", "/api/now/v2/table"):
            routes += [
                Route(prefix + "/{table}", self.table, methods=methods),
                Route(prefix + "/{table}/{sys_id}", self.table, methods=methods),
            ]
        return Starlette(routes=routes)
