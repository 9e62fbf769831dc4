"""A fake iTop REST/JSON web service (``/webservices/rest.php``), as its documentation says.

* One endpoint: ``POST /webservices/rest.php?version=1.3`` with the form
  field ``json_data`` (a JSON document: ``operation``, ``class``, ``key``,
  ``output_fields``, ``limit``, ``page``; ``fields`` for ``core/create``),
  credentials as ``auth_user``/``auth_pwd`` form fields or HTTP Basic;
* ``core/get`` takes an id or an OQL query as ``key`` (here: ``SELECT Class [WHERE
  cond AND cond…]`` with ``= != >= > <= < LIKE IN``); the answer is
  ``{"objects": {"Class::id": {"code": 0, "message": "", "class", "key",
  "fields": {...}}} | null, "code": 0, "message": "Found: N"}`` where N is
  the number of objects the query matches; ``limit``/``page`` cut the
  objects; no order is promised (the fake answers in id order);
* ``core/create`` answers the created object's ``key``; an error is HTTP
  200 with ``code`` non-zero (iTop's convention);
* ``core/update`` sets ``fields`` of the object at ``key``; a case log
  (``public_log``) takes an entry as ``{"add_item": {"message", "format"}}``
  and ``core/get`` shows it as ``{"entries": [{"date", "user_login",
  "user_id", "message", "message_html"}]}``, newest first;
* instants are the server's zone (here Europe/Paris), ``YYYY-MM-DD
  HH:MM:SS``; status history is ``CMDBChangeOpSetAttributeScalar``
  (``objclass``, ``objkey``, ``attcode``, ``oldvalue``, ``newvalue``, ``date``);
* ``burst``: that many requests answered 429 with ``Retry-After`` (the
  reverse proxy in front of iTop), ``lose_next_create``: a 502 after creating.
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

USER, PASSWORD = "qloop-rest", "itop-pw"
ZONE = ZoneInfo("Europe/Paris")
FMT = "%Y-%m-%d %H:%M:%S"
STATUSES = ["new", "assigned", "pending", "resolved", "closed"]
_SELECT = re.compile(r"^SELECT\s+(\w+)(?:\s+WHERE\s+(.*))?$", re.S)
_COND = re.compile(r"^(\w+)\s*(>=|<=|!=|=|>|<|LIKE|IN)\s*(.*)$", re.S)


def itop_time(at: datetime) -> str:
    return at.astimezone(ZONE).strftime(FMT)


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        return [_value(p) for p in text[1:-1].split(",") if p.strip()]
    return text[1:-1] if text[:1] in "'\"" else text


class FakeItop:
    def __init__(self) -> None:
        self.objects: dict[str, dict[int, dict[str, Any]]] = {
            "UserRequest": {},
            "CMDBChangeOpSetAttributeScalar": {},
        }
        self.now = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
        self.calls: Counter[str] = Counter()
        self.burst = 0
        self.lose_next_create = False

    # -- data ---------------------------------------------------------------------------

    def _change(self, key: int, at: datetime, old: str, new: str) -> None:
        ops = self.objects["CMDBChangeOpSetAttributeScalar"]
        ops[len(ops) + 1] = {"objclass": "UserRequest", "objkey": str(key), "attcode": "status",
                             "oldvalue": old, "newvalue": new, "date": itop_time(at)}  # fmt: skip

    def add(self, at: datetime, **fields: Any) -> dict[str, Any]:
        table = self.objects["UserRequest"]
        key = len(table) + 1
        table[key] = {
            "id": str(key), "ref": f"R-{key:06d}", "title": f"Request {key}", "status": "new",
            "priority": "3", "org_id_friendlyname": "Demo", "service_name": "Printing",
            "caller_id_friendlyname": f"Caller {key % 5}", "start_date": itop_time(at),
            "last_update": itop_time(at), "resolution_date": "", "close_date": "",
            "description": "", "public_log": [], **fields,
        }  # fmt: skip
        return table[key]

    def _out(self, row: dict[str, Any], name: str) -> Any:
        """A field as core/get shows it: a case log is ``{"entries": [...]}``, newest first."""
        if name == "public_log":
            return {"entries": list(reversed(row.get("public_log") or []))}
        return row.get(name, "")

    def _objects(self, doc: dict[str, Any]) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
        key = str(doc["key"])
        if key.isdigit():  # a key may be the object's id
            cls = str(doc.get("class"))
            found = self.objects.get(cls, {}).get(int(key))
            return cls, [(int(key), found)] if found else []
        return self.select(key)

    def log(self, key: int, message: str, at: datetime | None = None, login: str = "tech") -> None:
        """A public log entry on request ``key``, as a technician writes it in the console."""
        self.objects["UserRequest"][key]["public_log"].append({
            "date": itop_time(at or self.now), "user_login": login, "user_id": "8",
            "message": message, "message_html": f"<p>{message}</p>",
        })  # fmt: skip

    def set_status(self, key: int, status: str, at: datetime | None = None) -> None:
        at = at or self.now
        row = self.objects["UserRequest"][key]
        self._change(key, at, row["status"], status)
        row.update(status=status, last_update=itop_time(at))
        if status == "resolved":
            row["resolution_date"] = itop_time(at)
        if status == "closed":
            row["close_date"] = itop_time(at)

    def generate(self, n: int, seed: str, start: datetime, days: int) -> None:
        rng = random.Random(seed)
        for _ in range(n):
            at = start + timedelta(seconds=rng.randrange(days * 86400))
            row = self.add(at, priority=str(rng.randrange(1, 5)))
            for status in STATUSES[1 : rng.randrange(len(STATUSES)) + 1]:
                at += timedelta(minutes=rng.randrange(5, 600))
                self.set_status(int(row["id"]), status, at)

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # -- OQL ----------------------------------------------------------------------------

    def select(self, oql: str) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
        match = _SELECT.match(oql.strip())
        if match is None:
            raise ValueError(f"OQL: cannot parse {oql!r}")
        cls, where = match.groups()
        if cls not in self.objects:
            raise ValueError(f"OQL: unknown class {cls}")
        conds = []
        for part in re.split(r"\s+AND\s+", where or "") if where else []:
            cond = _COND.match(part.strip())
            if cond is None:
                raise ValueError(f"OQL: cannot parse condition {part!r}")
            conds.append((cond.group(1), cond.group(2), _value(cond.group(3))))
        rows = [(k, r) for k, r in sorted(self.objects[cls].items())
                if all(self._test(str(r.get(f, "")), op, arg) for f, op, arg in conds)]  # fmt: skip
        return cls, rows

    @staticmethod
    def _test(value: str, op: str, arg: Any) -> bool:
        if op == "IN":
            return value in [str(a) for a in arg]
        if op == "LIKE":
            return re.fullmatch(re.escape(str(arg)).replace("%", ".*"), value) is not None
        return {"=": value == arg, "!=": value != arg, ">=": value >= arg, ">": value > arg,
                "<=": value <= arg, "<": value < arg}[op]  # fmt: skip

    # -- the app ------------------------------------------------------------------------

    def _authorised(self, request: Request, form: Any) -> bool:
        if form.get("auth_user") == USER and form.get("auth_pwd") == PASSWORD:
            return True
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header == f"Basic {expected}"

    def operate(self, doc: dict[str, Any]) -> dict[str, Any]:
        op = doc.get("operation")
        if op == "core/get":
            cls, rows = self._objects(doc)
            limit, page = int(doc.get("limit") or 0), int(doc.get("page") or 1)
            chunk = rows[(page - 1) * limit : page * limit] if limit else rows
            wanted = [f.strip() for f in str(doc.get("output_fields") or "id").split(",")]
            objects = {
                f"{cls}::{k}": {"code": 0, "message": "", "class": cls, "key": str(k),
                                "fields": {f: self._out(r, f) for f in wanted}}
                for k, r in chunk
            }  # fmt: skip
            return {"objects": objects or None, "code": 0, "message": f"Found: {len(rows)}"}
        if op == "core/create" and doc.get("class") == "UserRequest":
            fields = dict(doc.get("fields") or {})
            if not fields.get("title") or not fields.get("org_id"):
                return {"objects": None, "code": 100, "message": "Error: title, org_id needed"}
            fields.pop("org_id")
            row = self.add(self.now, **fields)
            key = row["id"]
            return {"objects": {f"UserRequest::{key}": {"code": 0, "message": "created",
                    "class": "UserRequest", "key": key, "fields": {"id": key}}},
                    "code": 0, "message": None}  # fmt: skip
        if op == "core/update" and doc.get("class") == "UserRequest":
            cls, rows = self._objects(doc)
            if len(rows) != 1:
                return {"objects": None, "code": 100, "message": f"Error: {len(rows)} objects"}
            key, row = rows[0]
            fields = dict(doc.get("fields") or {})
            log = fields.pop("public_log", None)
            if log is not None:  # a case log gets an entry through {"add_item": {...}}
                item = log.get("add_item") if isinstance(log, dict) else None
                if not isinstance(item, dict) or not str(item.get("message") or "").strip():
                    return {
                        "objects": None,
                        "code": 100,
                        "message": "Error: public_log: add_item with a message expected",
                    }
                row["public_log"].append({
                    "date": itop_time(self.now), "user_login": USER, "user_id": "7",
                    "message": str(item["message"]), "message_html": str(item["message"]),
                })  # fmt: skip
            row.update({k: str(v) for k, v in fields.items()})
            row["last_update"] = itop_time(self.now)
            return {"objects": {f"UserRequest::{key}": {"code": 0, "message": "updated",
                    "class": "UserRequest", "key": str(key), "fields": {"id": str(key)}}},
                    "code": 0, "message": None}  # fmt: skip
        return {"code": 1, "message": f"Error: unknown operation {op!r}"}

    def app(self) -> Starlette:
        async def rest(request: Request) -> Response:
            self.calls["rest"] += 1
            form = dict(parse_qsl((await request.body()).decode()))
            if self.burst > 0:
                self.burst -= 1
                return Response("Too Many Requests", status_code=429, headers={"Retry-After": "1"})
            if not self._authorised(request, form):
                return JSONResponse({"code": 1, "message": "Error: Invalid login"})
            try:
                doc = json.loads(str(form.get("json_data") or ""))
                self.calls[str(doc.get("operation"))] += 1
                answer = self.operate(doc)
            except (ValueError, KeyError) as exc:
                return JSONResponse({"code": 100, "message": f"Error: {exc}"})
            if self.lose_next_create and doc.get("operation") == "core/create":
                self.lose_next_create = False
                return Response("Bad Gateway", status_code=502)
            return JSONResponse(answer)

        return Starlette(routes=[Route("/webservices/rest.php", rest, methods=["POST"])])
