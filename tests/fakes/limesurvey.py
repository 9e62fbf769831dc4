"""A fake LimeSurvey RemoteControl 2 server (JSON-RPC on one endpoint), for tests.

Built from LimeSurvey's ``remotecontrol_handle`` behaviour as documented in
``shared/research/survey-apis.md`` §1:

* every reply is HTTP 200 ``{"id", "result", "error"}``; business errors are
  ``result={"status": "..."}`` (``Invalid session key``, ``Invalid user name
  or password``, ``No survey participants found.``…); protocol errors are a
  string in ``error``;
* ``add_participants`` keeps only known columns (unknown attributes are
  dropped silently) and answers the saved rows, or ``errors`` per row;
* ``list_participants`` takes conditions ``{"col": value}`` or
  ``{"col": [op, value]}`` (``< > >= <= = <> LIKE IN``) and ``iStart`` as a
  tid lower bound, ordered by tid;
* ``invite_participants`` mails at most :attr:`FakeLimeSurvey.max_emails`
  per call and answers ``"N left to send"``;
* ``remind_participants(key, sid, iMinDaysBetween, iMaxReminders, aTokenIds)``
  mails the reminder to invited (``sent`` not ``N``), not completed
  participants with ``emailstatus`` ``OK`` and an e-mail, whose
  ``remindercount`` is below ``iMaxReminders`` and whose last mail
  (``remindersent``, else ``sent``) is older than ``iMinDaysBetween`` days;
  at most ``max_emails`` per call; a participant outside ``validfrom`` /
  ``validuntil`` fails (``Token not valid yet`` / ``anymore``). Each
  reminder sets ``remindersent`` and adds one to ``remindercount``; the
  ``left to send`` count is over the whole table, ignoring ``aTokenIds``
  (as the real one's is);
* ``export_responses_by_token`` answers a base64 JSON export;
* dates are naive server-local (``server_tz``).

Tests drive it directly: :meth:`FakeLimeSurvey.expire_sessions`,
:meth:`throttle` (429 + Retry-After bursts), :meth:`lose_reply` (the call
is carried out, then the reply is lost as a 502), :meth:`answer` (a
participant completes the survey).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ENDPOINT = "/index.php/admin/remotecontrol"
_COLUMNS = (
    "tid", "participant_id", "firstname", "lastname", "email", "emailstatus", "token",
    "language", "blacklisted", "sent", "remindersent", "remindercount", "completed",
    "usesleft", "validfrom", "validuntil", "mpid",
)  # fmt: skip
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class FakeSurvey:
    sid: int
    attributes: dict[str, str]
    """Participant attribute columns and their descriptions (attribute_1: "qloop token")."""
    anonymized: str = "N"
    active: str = "Y"
    participants: dict[int, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    next_tid: int = 1
    next_rid: int = 1

    @property
    def columns(self) -> set[str]:
        return set(_COLUMNS) | set(self.attributes)


@dataclass
class Mail:
    """One invitation e-mail the fake 'sent'."""

    sid: int
    tid: int
    email: str
    token: str
    attributes: dict[str, Any]
    kind: str = "invite"
    """``invite`` or ``remind``."""


class FakeLimeSurvey:
    """The fake server's state and its Starlette app (:attr:`app`)."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        server_tz: tzinfo | str = "Asia/Shanghai",
        max_emails: int = 2,
        session_lifetime_s: float = 7200,
    ) -> None:
        self.users = users or {"qloop": "s3cret-pass"}
        self.tz = ZoneInfo(server_tz) if isinstance(server_tz, str) else server_tz
        self.max_emails = max_emails
        self.session_lifetime_s = session_lifetime_s
        self.surveys: dict[int, FakeSurvey] = {}
        self.sessions: set[str] = set()
        self.mails: list[Mail] = []
        self.calls: list[str] = []
        self.now: datetime = datetime(2026, 10, 1, tzinfo=UTC)
        self._throttle: list[float] = []
        self._lose: dict[str, int] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route(ENDPOINT, self._endpoint, methods=["POST"])])

    # -- test controls -------------------------------------------------------------

    def add_survey(
        self, sid: int, attributes: dict[str, str] | list[str], **settings: Any
    ) -> FakeSurvey:
        attrs = dict(attributes) if isinstance(attributes, dict) else {a: a for a in attributes}
        survey = FakeSurvey(sid=sid, attributes=attrs, **settings)
        self.surveys[sid] = survey
        return survey

    def expire_sessions(self) -> None:
        """Every session key becomes invalid (as after iSessionExpirationTime)."""
        with self._lock:
            self.sessions.clear()

    def throttle(self, count: int, retry_after: float = 1.0) -> None:
        """The next ``count`` requests get HTTP 429 with ``Retry-After``."""
        with self._lock:
            self._throttle.extend([retry_after] * count)

    def lose_reply(self, method: str, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` are carried out, then answered 502."""
        with self._lock:
            self._lose[method] = self._lose.get(method, 0) + count

    def local(self, at: datetime) -> str:
        """``at`` as LimeSurvey writes dates: naive server-local ``Y-m-d H:i:s``."""
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def answer(
        self, sid: int, tid: int, answers: dict[str, Any], submitted: datetime | None = None
    ) -> dict[str, Any]:
        """Participant ``tid`` completes survey ``sid`` with ``answers`` (question code → code)."""
        with self._lock:
            survey = self.surveys[sid]
            part = survey.participants[tid]
            at = submitted or self.now
            stamp = self.local(at)
            row = {
                "id": str(survey.next_rid),
                "submitdate": stamp,
                "lastpage": "1",
                "startlanguage": part.get("language") or "en",
                "seed": str(1000 + survey.next_rid),
                "token": "" if survey.anonymized == "Y" else part["token"],
                **answers,
            }
            survey.next_rid += 1
            survey.responses.append(row)
            part["completed"] = stamp[:16]
            return row

    def add_participant(self, sid: int, **fields: Any) -> dict[str, Any]:
        """Add a participant as a LimeSurvey user would by hand (not invited yet)."""
        with self._lock:
            survey = self.surveys[sid]
            (row,) = self._store(survey, [fields], create_token=True)
            return row

    def participants(self, sid: int) -> list[dict[str, Any]]:
        return [dict(p) for p in self.surveys[sid].participants.values()]

    # -- HTTP ------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            return JSONResponse({"id": None, "result": None, "error": "bad content type"})
        with self._lock:
            if self._throttle:
                wait = self._throttle.pop(0)
                return JSONResponse(
                    {"error": "Too many requests"},
                    status_code=429,
                    headers={"Retry-After": str(int(wait))},
                )
        try:
            body = json.loads(await request.body())
            method, params, rid = body["method"], body.get("params") or [], body.get("id")
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"id": None, "result": None, "error": "unable to decode malformed json"}
            )
        handler = getattr(self, f"rpc_{method}", None)
        with self._lock:
            self.calls.append(method)
        if handler is None:
            reply = {"id": rid, "result": None, "error": "unknown method or incorrect parameters"}
            return JSONResponse(reply)
        try:
            with self._lock:
                result = handler(*params)
        except TypeError:
            reply = {"id": rid, "result": None, "error": "unknown method or incorrect parameters"}
            return JSONResponse(reply)
        with self._lock:
            if self._lose.get(method):
                self._lose[method] -= 1
                return Response("upstream connection lost", status_code=502)
        return JSONResponse({"id": rid, "result": result, "error": None})

    # -- RPC methods (called under the lock) -----------------------------------------

    def _session_ok(self, key: Any) -> bool:
        return isinstance(key, str) and key in self.sessions

    def _survey(self, key: Any, sid: Any) -> FakeSurvey | dict[str, str]:
        if not self._session_ok(key):
            return {"status": "Invalid session key"}
        survey = self.surveys.get(int(sid))
        if survey is None:
            return {"status": "Error: Invalid survey ID"}
        return survey

    def rpc_get_session_key(self, username: str, password: str, plugin: str = "Authdb") -> Any:
        if self.users.get(username) != password:
            return {"status": "Invalid user name or password"}
        key = secrets.token_hex(16)
        self.sessions.add(key)
        return key

    def rpc_release_session_key(self, key: str) -> str:
        self.sessions.discard(key)
        return "OK"

    def rpc_get_survey_properties(self, key: str, sid: int, settings: Any = None) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            # this method spells it with a capital S, as the real one does
            if survey["status"] == "Invalid session key":
                return {"status": "Invalid Session key"}
            return survey
        props = {
            "sid": survey.sid,
            "active": survey.active,
            "anonymized": survey.anonymized,
            "datestamp": "Y",
            "attributedescriptions": json.dumps(
                {
                    name: {"description": desc, "mandatory": "N", "show_register": "N"}
                    for name, desc in survey.attributes.items()
                }
            ),
        }
        wanted = settings or list(props)
        picked = {k: props[k] for k in wanted if k in props}
        return picked or {"status": "No valid Data"}

    def rpc_add_participants(
        self, key: str, sid: int, data: list[dict[str, Any]], create_token: bool = True
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        return self._store(survey, data, create_token)

    def _store(
        self, survey: FakeSurvey, data: list[dict[str, Any]], create_token: bool
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in data:
            email = str(item.get("email") or "")
            if email and not _EMAIL.match(email):
                out.append({**item, "errors": {"email": ["Invalid email address."]}})
                continue
            token = secrets.token_urlsafe(11)[:15] if create_token else item.get("token", "")
            if token and any(p["token"] == token for p in survey.participants.values()):
                out.append({**item, "errors": {"token": ["Access code must be unique."]}})
                continue
            tid = survey.next_tid
            survey.next_tid += 1
            row = {c: "" for c in survey.columns}
            kept = {k: v for k, v in item.items() if k in survey.columns and k != "tid"}
            row.update(
                {
                    "participant_id": None,
                    "emailstatus": "OK",
                    "language": "",
                    "blacklisted": "",
                    "sent": "N",
                    "remindersent": "N",
                    "remindercount": 0,
                    "completed": "N",
                    "usesleft": 1,
                    "validfrom": None,
                    "validuntil": None,
                    "mpid": None,
                    **kept,
                    "tid": tid,
                    "token": token,
                }
            )
            survey.participants[tid] = row
            out.append({**row, "tid": str(tid)})
        return out

    def rpc_list_participants(
        self,
        key: str,
        sid: int,
        start: int = 0,
        limit: int = 10,
        unused: bool = False,
        attributes: Any = False,
        conditions: Any = None,
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        conds = {k: v for k, v in (conditions or {}).items() if k in survey.columns}
        rows = [
            p
            for tid, p in sorted(survey.participants.items())
            if tid >= int(start)
            and (not unused or p["completed"] == "N")
            and all(_matches(p.get(col), cond) for col, cond in conds.items())
        ][: int(limit)]
        if not rows:
            return {"status": "No survey participants found."}
        extra = [
            a
            for a in (attributes or [])
            if a in survey.columns and a not in ("tid", "token", "firstname", "lastname", "email")
        ]
        return [
            {
                "tid": str(p["tid"]),
                "token": p["token"],
                "participant_info": {
                    "firstname": p["firstname"],
                    "lastname": p["lastname"],
                    "email": p["email"],
                },
                **{a: p.get(a) for a in extra},
            }
            for p in rows
        ]

    def rpc_get_participant_properties(
        self, key: str, sid: int, query: Any, properties: Any = None
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        if isinstance(query, dict):
            found = [
                p
                for p in survey.participants.values()
                if all(str(p.get(k)) == str(v) for k, v in query.items())
            ]
        else:
            found = [survey.participants[int(query)]] if int(query) in survey.participants else []
        if not found:
            return {"status": "Error: No token matched in the database"}
        if len(found) > 1:
            return {"status": "Error: More than 1 result was found based on your attributes."}
        part = found[0]
        names = properties or list(part)
        return {k: part.get(k) for k in names if k in survey.columns}

    def rpc_invite_participants(
        self,
        key: str,
        sid: int,
        token_ids: Any = None,
        email: bool = True,
        continue_on_error: bool = False,
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        wanted = {int(t) for t in token_ids} if token_ids else None
        candidates = [
            p
            for tid, p in sorted(survey.participants.items())
            if (wanted is None or tid in wanted)
            and p["emailstatus"] == "OK"
            and p["email"]
            and p["completed"] == "N"
            and ((p["sent"] == "N") if email else (p["sent"] != "N"))
        ]
        if not candidates:
            return {"status": "Error: No candidate tokens"}
        batch, rest = candidates[: self.max_emails], candidates[self.max_emails :]
        result: dict[str, Any] = {}
        for part in batch:
            part["sent"] = self.local(self.now)[:16]
            attrs = {a: part.get(a) for a in survey.attributes}
            self.mails.append(Mail(survey.sid, part["tid"], part["email"], part["token"], attrs))
            name = f"{part['firstname']} {part['lastname']}".strip()
            result[str(part["tid"])] = {
                "name": name,
                "email": part["email"],
                "status": "OK",
                "warning": None,
                "error": None,
            }
        result["status"] = f"{len(rest)} left to send"
        return result

    def rpc_remind_participants(
        self,
        key: str,
        sid: int,
        min_days: Any = None,
        max_reminders: Any = None,
        token_ids: Any = False,
        continue_on_error: bool = False,
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        compared = (
            self.local(self.now - timedelta(days=int(min_days)))[:16]
            if min_days is not None
            else None
        )

        def candidate(p: dict[str, Any]) -> bool:
            sent, reminded = str(p["sent"] or "N"), str(p["remindersent"] or "N")
            return (
                p["completed"] in ("N", "")
                and bool(p["token"])
                and bool(p["email"])
                and sent not in ("N", "")
                and p["emailstatus"] == "OK"
                and p.get("blacklisted") != "Y"
                and (max_reminders is None or int(p["remindercount"] or 0) < int(max_reminders))
                and (
                    compared is None
                    or (reminded == "N" and sent < compared)
                    or (reminded != "N" and reminded < compared)
                )
            )

        every = [p for _, p in sorted(survey.participants.items()) if candidate(p)]
        wanted = {int(t) for t in token_ids} if token_ids else None
        batch = [p for p in every if wanted is None or p["tid"] in wanted][: self.max_emails]
        if not batch:
            return {"status": "Error: No candidate tokens"}
        stamp = self.local(self.now)
        result: dict[str, Any] = {}
        for part in batch:
            name = f"{part['firstname']} {part['lastname']}".strip()
            error = None
            if part.get("validfrom") and str(part["validfrom"]) > stamp:
                error = "Token not valid yet"
            elif part.get("validuntil") and str(part["validuntil"]) < stamp:
                error = "Token not valid anymore"
            if error is not None:
                result[str(part["tid"])] = {
                    "name": name,
                    "email": part["email"],
                    "status": "fail",
                    "error": error,
                }
                if not continue_on_error:
                    break
                continue
            part["remindersent"] = stamp[:16]
            part["remindercount"] = int(part["remindercount"] or 0) + 1
            attrs = {a: part.get(a) for a in survey.attributes}
            self.mails.append(
                Mail(survey.sid, part["tid"], part["email"], part["token"], attrs, kind="remind")
            )
            result[str(part["tid"])] = {
                "name": name,
                "email": part["email"],
                "status": "OK",
                "warning": None,
                "error": None,
            }
        result["status"] = f"{len(every) - len(batch)} left to send"
        return result

    def rpc_export_responses(
        self,
        key: str,
        sid: int,
        doc_type: str,
        language: Any = None,
        completion: str = "all",
        heading: str = "code",
        response_type: str = "short",
        from_id: Any = None,
        to_id: Any = None,
        fields: Any = None,
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        if not survey.responses:
            return {"status": "No Data, could not get max id."}
        rows = [
            r
            for r in survey.responses
            if (from_id is None or int(r["id"]) >= int(from_id))
            and (to_id is None or int(r["id"]) <= int(to_id))
        ]
        if completion == "complete":
            rows = [r for r in rows if r.get("submitdate")]
        elif completion == "incomplete":
            rows = [r for r in rows if not r.get("submitdate")]
        doc = json.dumps({"responses": rows}, ensure_ascii=False).encode("utf-8")
        return base64.b64encode(doc).decode("ascii")

    def rpc_export_responses_by_token(
        self,
        key: str,
        sid: int,
        doc_type: str,
        token: Any,
        language: Any = None,
        completion: str = "all",
        heading: str = "code",
        response_type: str = "short",
        fields: Any = None,
    ) -> Any:
        survey = self._survey(key, sid)
        if not isinstance(survey, FakeSurvey):
            return survey
        if not survey.responses:
            return {"status": "No Data, could not get max id."}
        tokens = set(token) if isinstance(token, list) else {token}
        rows = [r for r in survey.responses if r["token"] in tokens]
        if not rows:
            return {"status": "No Response found for Token"}
        if completion == "complete":
            rows = [r for r in rows if r.get("submitdate")]
        elif completion == "incomplete":
            rows = [r for r in rows if not r.get("submitdate")]
        doc = json.dumps({"responses": rows}, ensure_ascii=False).encode("utf-8")
        return base64.b64encode(doc).decode("ascii")


def _matches(value: Any, cond: Any) -> bool:
    if not isinstance(cond, list):
        return str(value) == str(cond)
    op, *args = cond
    operand = args[0] if args else None
    text = "" if value is None else str(value)
    if op == "IN":
        return text in {str(a) for a in (operand if isinstance(operand, list) else args)}
    if op == "LIKE":
        pattern = "^" + re.escape(str(operand)).replace("%", ".*").replace("_", ".") + "$"
        return re.match(pattern, text) is not None
    if op in ("<", ">", "<=", ">="):
        left: Any = text
        right: Any = str(operand)
        if text.lstrip("-").isdigit() and right.lstrip("-").isdigit():
            left, right = int(text), int(right)
        return {
            "<": left < right,
            ">": left > right,
            "<=": left <= right,
            ">=": left >= right,
        }[op]
    if op == "=":
        return text == str(operand)
    if op == "<>":
        return text != str(operand)
    msg = f"unsupported operator {op!r}"
    raise TypeError(msg)
