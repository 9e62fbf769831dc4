"""A fake Twilio (TaskRouter v1 and Studio v2) for integration tests, served by ``serve``.

Built from Twilio's API reference, with what the connectors must cope with:

* Basic auth with the account SID and auth token (or an API key); bad
  credentials → 401 ``{"code": 20003, "message", "more_info", "status"}``;
* form-encoded POST bodies; lists paged with ``PageSize``/``PageToken``
  and ``meta.next_page_url`` (absolute URLs carrying the filters);
* TaskRouter Tasks (create, list filtered by ``AssignmentStatus`` and
  ``EvaluateTaskAttributes`` — ``a == "x"`` joined by ``AND`` — ordered by
  ``DateCreated``; list items without attributes, as Twilio does; fetch;
  update to complete or cancel) and the Event resource (filtered by
  ``EventType``, ``StartDate``, ``EndDate``, ``TaskSid``);
* Studio Executions (create with To/From/Parameters, one active execution
  per contact → 409, list by ``DateCreatedFrom``/``DateCreatedTo``, fetch,
  Context, end);
* bursts of 429 (code 20429) with ``Retry-After``, and creates whose reply
  is lost (the work is done, the answer is a 502).

ISO 8601 dates (``2026-11-20T10:00:00Z``) as TaskRouter and Studio write
them. :meth:`FakeTwilio.complete_task` plays the agent (one recorded
outcome), :meth:`FakeTwilio.work_task` a call centre's agent (a list of
dial attempts, the ``wrapping`` state and its wrap-up form), and
:func:`signed` / :func:`post_callback` sign event callbacks the way Twilio
does (with a wrong or old key for forged/stale deliveries).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
API_KEY_SID = "SK" + "b" * 32
API_KEY_SECRET = "fake-api-key-secret"
WORKSPACE_SID = "WS" + "c" * 32
WORKFLOW_SID = "WW" + "d" * 32
FLOW_SID = "FW" + "e" * 32
FROM_NUMBER = "+8675500000000"

Params = list[tuple[str, str]]


def sign(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """X-Twilio-Signature as Twilio computes it (independent of the connector's code)."""
    payload = url + "".join(f"{k}{v}" for k, v in sorted(params))
    mac = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def signed(
    url: str, params: Mapping[str, str], auth_token: str = AUTH_TOKEN
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a form-encoded callback to ``url``, signed with ``auth_token``."""
    pairs = list(params.items())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(auth_token, url, pairs),
        "I-Twilio-Idempotency-Token": hashlib.sha1(repr(pairs).encode()).hexdigest(),
    }
    return headers, urlencode(pairs).encode()


def post_callback(
    url: str, params: Mapping[str, str], auth_token: str = AUTH_TOKEN
) -> httpx.Response:
    """POST a signed callback to ``url`` (a wrong ``auth_token`` makes a forged one)."""
    headers, body = signed(url, params, auth_token)
    return httpx.post(url, content=body, headers=headers, timeout=10)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _parse_date(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _evaluate(expression: str, attributes: Mapping[str, Any]) -> bool:
    """The subset of TaskRouter expressions the fake understands: ``a == "x" AND b == 2``."""
    for clause in expression.replace(" and ", " AND ").split(" AND "):
        left, sep, right = clause.partition("==")
        if not sep:
            msg = f"unsupported expression {clause!r}"
            raise ValueError(msg)
        value: Any = attributes
        for part in left.strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        wanted = json.loads(right.strip().replace("'", '"'))
        if value != wanted:
            return False
    return True


@dataclass
class FakeTwilio:
    """In-memory TaskRouter and Studio for one account (``app`` is the ASGI app)."""

    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    auth_token: str = AUTH_TOKEN
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    creates: int = 0
    throttle: int = 0
    """The next ``throttle`` requests get 429 with ``Retry-After: retry_after``."""
    retry_after: str = "2"
    lose_replies: int = 0
    """The next ``lose_replies`` creates are done but answered 502."""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        ws = "/v1/Workspaces/{ws}"
        flow = "/v2/Flows/{flow}/Executions"
        self.app = Starlette(
            routes=[
                Route("/v1/Workspaces/{ws}", self._workspace, methods=["GET"]),
                Route(ws + "/Workflows/{wf}", self._workflow, methods=["GET"]),
                Route(ws + "/Tasks", self._tasks, methods=["GET", "POST"]),
                Route(ws + "/Tasks/{sid}", self._task, methods=["GET", "POST"]),
                Route(ws + "/Events", self._events, methods=["GET"]),
                Route(flow, self._executions, methods=["GET", "POST"]),
                Route(flow + "/{sid}", self._execution, methods=["GET", "POST"]),
                Route(flow + "/{sid}/Context", self._context, methods=["GET"]),
            ]
        )

    # -- helpers for tests -------------------------------------------------------

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):032x}"

    def tasks_by_key(self) -> dict[str, list[str]]:
        """Task SIDs per ``qloop_key`` attribute (a callback sent twice shows two)."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for sid, task in self.tasks.items():
                key = json.loads(task["attributes"]).get("qloop_key")
                out.setdefault(str(key), []).append(sid)
        return out

    def pending_tasks(self) -> list[str]:
        with self._lock:
            return [s for s, t in self.tasks.items() if t["assignment_status"] == "pending"]

    def complete_task(
        self,
        sid: str,
        outcome: Mapping[str, Any],
        *,
        worker: str = "王芳",
        reason: str = "callback done",
    ) -> list[dict[str, str]]:
        """Play the agent: accept the task, record ``outcome`` in its attributes, complete it.

        ``outcome`` is merged into the attributes (e.g. ``{"callback_outcome": {...}}``).
        Returns the event callbacks TaskRouter would POST (form parameters),
        in order: reservation.accepted, task.completed, reservation.completed.
        """
        with self._lock:
            task = self.tasks[sid]
            worker_sid = "WK" + hashlib.md5(worker.encode()).hexdigest()
            task["assignment_status"] = "assigned"
            accepted = self._event(task, "reservation.accepted", worker_sid, worker)
            attributes = {**json.loads(task["attributes"]), **outcome}
            task["attributes"] = json.dumps(attributes, ensure_ascii=False)
            task["assignment_status"] = "completed"
            task["reason"] = reason
            task["date_updated"] = _iso(self.clock())
            done = self._event(task, "task.completed", worker_sid, worker)
            res_done = self._event(task, "reservation.completed", worker_sid, worker)
        return [self.callback_params(e) for e in (accepted, done, res_done)]

    def work_task(
        self,
        sid: str,
        attempts: list[Mapping[str, Any]],
        wrapup: Mapping[str, Any] | None = None,
        *,
        worker: str = "王芳",
        outcome_key: str = "callback_outcome",
        reason: str = "callback done",
    ) -> list[dict[str, str]]:
        """Play a call centre's agent: dial attempts, then a wrap-up form, then complete.

        As a TaskRouter voice task goes: the reservation is accepted (task
        ``assigned``); each dial attempt (``at``, ``reached``, ``agent``…)
        is written to the task's attributes under ``<outcome_key>.attempts``
        as it happens; when the call ends the task moves to ``wrapping``
        (``task.wrapup`` / ``reservation.wrapup``), the agent's wrap-up form
        (e.g. ``confirmed``, ``score``, ``comment``) is merged into
        ``<outcome_key>``, and the task is completed (``task.completed``,
        ``reservation.completed``). Attempts carry their own times, which
        the fake's clock does not change: completing the task later (the
        clock advanced) is how a timely call gets a late completion.
        Returns the event callbacks in order.
        """
        with self._lock:
            task = self.tasks[sid]
            worker_sid = "WK" + hashlib.md5(worker.encode()).hexdigest()
            task["assignment_status"] = "assigned"
            events = [self._event(task, "reservation.accepted", worker_sid, worker)]
            attributes = json.loads(task["attributes"])
            record: dict[str, Any] = {"attempts": [dict(a) for a in attempts]}
            attributes[outcome_key] = record
            task["attributes"] = json.dumps(attributes, ensure_ascii=False)
            task["assignment_status"] = "wrapping"
            task["date_updated"] = _iso(self.clock())
            events.append(self._event(task, "task.wrapup", worker_sid, worker))
            events.append(self._event(task, "reservation.wrapup", worker_sid, worker))
            record.update(wrapup or {})
            task["attributes"] = json.dumps(attributes, ensure_ascii=False)
            task["assignment_status"] = "completed"
            task["reason"] = reason
            task["date_updated"] = _iso(self.clock())
            events.append(self._event(task, "task.completed", worker_sid, worker))
            events.append(self._event(task, "reservation.completed", worker_sid, worker))
        return [self.callback_params(e) for e in events]

    def cancel_task(self, sid: str, reason: str = "Task TTL Exceeded") -> dict[str, str]:
        """TaskRouter cancels the task (e.g. its Timeout passed); returns the callback."""
        with self._lock:
            task = self.tasks[sid]
            task["assignment_status"] = "canceled"
            task["reason"] = reason
            task["date_updated"] = _iso(self.clock())
            return self.callback_params(self._event(task, "task.canceled", None, None))

    def callback_params(self, event: Mapping[str, Any]) -> dict[str, str]:
        """The form parameters of the event callback for a stored Event resource."""
        data = event["event_data"]
        stamp = int(event["event_date_ms"])
        params = {
            "Sid": event["sid"],
            "EventType": event["event_type"],
            "AccountSid": ACCOUNT_SID,
            "WorkspaceSid": event["workspace_sid"],
            "WorkspaceName": "qloop callbacks",
            "EventDescription": event["description"],
            "ResourceType": event["resource_type"],
            "ResourceSid": event["resource_sid"],
            "Timestamp": str(stamp // 1000),
            "TimestampMs": str(stamp),
            "TaskSid": data["task_sid"],
            "TaskAttributes": data["task_attributes"],
            "TaskAge": str(data["task_age"]),
            "TaskPriority": "0",
            "TaskAssignmentStatus": data["task_assignment_status"],
            "TaskChannelUniqueName": "voice",
        }
        if data.get("task_completed_reason"):
            params["TaskCompletedReason"] = data["task_completed_reason"]
        if data.get("task_canceled_reason"):
            params["TaskCanceledReason"] = data["task_canceled_reason"]
        if data.get("worker_sid"):
            params["WorkerSid"] = data["worker_sid"]
            params["WorkerName"] = data["worker_name"]
            params["WorkerAttributes"] = "{}"
        return params

    def finish_execution(
        self, sid: str, variables: Mapping[str, Any], at: datetime | None = None
    ) -> dict[str, str]:
        """Play the flow: store its result variables and end the execution.

        Returns what the flow's Make HTTP Request widget posts to qloop.
        """
        with self._lock:
            execution = self.executions[sid]
            context = self.contexts[sid]
            context["flow"]["variables"] = dict(variables)
            execution["status"] = "ended"
            execution["date_updated"] = _iso(at or self.clock())
            data = context["flow"]["data"]
        return {
            "execution_sid": sid,
            "qloop_token": str(data.get("qloop_token")),
            "qloop_kind": str(data.get("qloop_kind")),
            **{k: str(v) for k, v in variables.items()},
        }

    # -- plumbing ----------------------------------------------------------------

    def _event(
        self, task: dict[str, Any], kind: str, worker_sid: str | None, worker: str | None
    ) -> dict[str, Any]:
        now = self.clock()
        created = _parse_date(task["date_created"]) or now
        status = task["assignment_status"]
        event = {
            "sid": self._sid("EV"),
            "account_sid": ACCOUNT_SID,
            "workspace_sid": task["workspace_sid"],
            "event_type": kind,
            "event_date": _iso(now),
            "event_date_ms": int(now.timestamp() * 1000),
            "resource_type": "reservation" if kind.startswith("reservation") else "task",
            "resource_sid": task["sid"],
            "description": f"{kind} for {task['sid']}",
            "actor_sid": worker_sid,
            "source": "twilio",
            "event_data": {
                "task_sid": task["sid"],
                "task_attributes": task["attributes"],
                "task_age": int((now - created).total_seconds()),
                "task_assignment_status": status,
                "task_completed_reason": task.get("reason") if status == "completed" else None,
                "task_canceled_reason": task.get("reason") if status == "canceled" else None,
                "worker_sid": worker_sid,
                "worker_name": worker,
            },
        }
        self.events.append(event)
        return event

    async def _params(self, request: Request) -> Params:
        body = (await request.body()).decode()
        return parse_qsl(body, keep_blank_values=True)

    def _guard(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        auth = request.headers.get("authorization", "")
        ok = {
            "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{self.auth_token}".encode()).decode(),
            "Basic " + base64.b64encode(f"{API_KEY_SID}:{API_KEY_SECRET}".encode()).decode(),
        }
        if auth not in ok:
            return _error(401, 20003, "Authenticate")
        if self.throttle > 0:
            self.throttle -= 1
            return _error(429, 20429, "Too Many Requests", {"Retry-After": self.retry_after})
        ws = request.path_params.get("ws")
        if ws is not None and ws != WORKSPACE_SID:
            return _error(404, 20404, f"The requested resource /Workspaces/{ws} was not found")
        flow = request.path_params.get("flow")
        if flow is not None and flow != FLOW_SID:
            return _error(404, 20404, f"The requested resource /Flows/{flow} was not found")
        return None

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> Response:
        query = parse_qsl(request.url.query, keep_blank_values=True)
        filters = [(k, v) for k, v in query if k not in ("PageToken", "Page", "PageSize")]
        try:
            size = min(max(int(request.query_params.get("PageSize", "50")), 1), 1000)
            token = request.query_params.get("PageToken", "PT0")
            offset = int(token.removeprefix("PT"))
        except ValueError:
            return _error(400, 20001, "Invalid paging parameter")
        base = f"{str(request.base_url).rstrip('/')}{request.url.path}"

        def url(at: int) -> str:
            page = [*filters, ("PageSize", str(size)), ("Page", str(at // size))]
            return f"{base}?{urlencode([*page, ('PageToken', f'PT{at}')])}"

        more = offset + size < len(items)
        meta = {
            "page": offset // size,
            "page_size": size,
            "first_page_url": url(0),
            "previous_page_url": url(max(offset - size, 0)) if offset else None,
            "url": url(offset),
            "next_page_url": url(offset + size) if more else None,
            "key": key,
        }
        return JSONResponse({key: items[offset : offset + size], "meta": meta})

    # -- TaskRouter ----------------------------------------------------------------

    async def _workspace(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        return JSONResponse(
            {"sid": WORKSPACE_SID, "friendly_name": "qloop callbacks", "event_callback_url": None}
        )

    async def _workflow(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        if request.path_params["wf"] != WORKFLOW_SID:
            return _error(404, 20404, "The requested resource was not found")
        return JSONResponse({"sid": WORKFLOW_SID, "friendly_name": "callbacks"})

    def _task_json(self, task: dict[str, Any], with_attributes: bool = True) -> dict[str, Any]:
        now = self.clock()
        created = _parse_date(task["date_created"]) or now
        out = {**task, "age": int((now - created).total_seconds())}
        if not with_attributes:
            out["attributes"] = None
        return out

    async def _tasks(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        if request.method == "GET":
            return self._list_tasks(request)
        params = dict(await self._params(request))
        try:
            attributes = json.loads(params.get("Attributes", "{}"))
            timeout = int(params.get("Timeout", "86400"))
        except ValueError:
            return _error(400, 20001, "Invalid Attributes or Timeout")
        if not isinstance(attributes, dict):
            return _error(400, 20001, "Attributes must be a JSON object")
        if params.get("WorkflowSid") != WORKFLOW_SID:
            return _error(400, 20001, "Invalid WorkflowSid")
        if not 1 <= timeout <= 1_209_600:
            return _error(400, 20001, "Timeout must be between 1 and 1209600")
        with self._lock:
            self.creates += 1
            now = _iso(self.clock())
            sid = self._sid("WT")
            task = {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "workspace_sid": WORKSPACE_SID,
                "workflow_sid": WORKFLOW_SID,
                "attributes": params["Attributes"],
                "assignment_status": "pending",
                "priority": int(params.get("Priority", "0")),
                "reason": None,
                "timeout": timeout,
                "task_channel_unique_name": params.get("TaskChannel", "default"),
                "date_created": now,
                "date_updated": now,
                "url": f"https://taskrouter.twilio.com/v1/Workspaces/{WORKSPACE_SID}/Tasks/{sid}",
            }
            self.tasks[sid] = task
            self._event(task, "task.created", None, None)
            if self.lose_replies > 0:
                self.lose_replies -= 1
                return _error(502, 20500, "Bad Gateway")
            return JSONResponse(self._task_json(task), status_code=201)

    def _list_tasks(self, request: Request) -> Response:
        statuses = request.query_params.getlist("AssignmentStatus")
        expression = request.query_params.get("EvaluateTaskAttributes")
        ordering = request.query_params.get("Ordering", "DateCreated:asc")
        if ordering not in ("DateCreated:asc", "DateCreated:desc"):
            return _error(400, 20001, f"Unsupported Ordering {ordering}")
        with self._lock:
            tasks = list(self.tasks.values())
        if statuses:
            tasks = [t for t in tasks if t["assignment_status"] in statuses]
        if expression:
            try:
                tasks = [t for t in tasks if _evaluate(expression, json.loads(t["attributes"]))]
            except ValueError:
                return _error(400, 20001, "Invalid EvaluateTaskAttributes expression")
        tasks.sort(key=lambda t: (t["date_created"], t["sid"]), reverse=ordering.endswith("desc"))
        return self._page(request, "tasks", [self._task_json(t, False) for t in tasks])

    async def _task(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        with self._lock:
            task = self.tasks.get(request.path_params["sid"])
            if task is None:
                return _error(404, 20404, "The requested resource was not found")
            if request.method == "GET":
                return JSONResponse(self._task_json(task))
            params = dict(await self._params(request))
            if "Attributes" in params:
                task["attributes"] = params["Attributes"]
            status = params.get("AssignmentStatus")
            allowed = {"completed": ("assigned", "wrapping"), "canceled": ("pending", "reserved")}
            if status is not None:
                if task["assignment_status"] not in allowed.get(status, ()):
                    return _error(400, 20001, f"Cannot move a {task['assignment_status']} task")
                task["assignment_status"] = status
                task["reason"] = params.get("Reason")
            task["date_updated"] = _iso(self.clock())
            if status is not None:
                self._event(task, f"task.{status}", None, None)
            return JSONResponse(self._task_json(task))

    async def _events(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        q = request.query_params
        now = self.clock()
        start = _parse_date(q["StartDate"]) if "StartDate" in q else None
        end = _parse_date(q["EndDate"]) if "EndDate" in q else None
        if ("StartDate" in q and start is None) or ("EndDate" in q and end is None):
            return _error(400, 20001, "StartDate and EndDate must be ISO 8601")
        if start is None:
            start = now - timedelta(minutes=int(q.get("Minutes", "15")))
        with self._lock:
            events = list(self.events)
        out = []
        for event in events:
            at = _parse_date(event["event_date"])
            assert at is not None
            if at < start or (end is not None and at > end):
                continue
            if "EventType" in q and event["event_type"] != q["EventType"]:
                continue
            if "TaskSid" in q and event["event_data"]["task_sid"] != q["TaskSid"]:
                continue
            out.append(event)
        return self._page(request, "events", out)

    # -- Studio ------------------------------------------------------------------

    async def _executions(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        if request.method == "GET":
            q = request.query_params
            start = _parse_date(q.get("DateCreatedFrom", "1970-01-01T00:00:00Z"))
            end = _parse_date(q.get("DateCreatedTo", "2999-01-01T00:00:00Z"))
            if start is None or end is None:
                return _error(400, 20001, "DateCreatedFrom/DateCreatedTo must be ISO 8601")
            with self._lock:
                items = [
                    {k: v for k, v in e.items() if k != "context"}
                    for e in self.executions.values()
                    if start <= (_parse_date(e["date_created"]) or start) <= end
                ]
            items.sort(key=lambda e: e["date_created"], reverse=True)
            return self._page(request, "executions", items)
        params = dict(await self._params(request))
        to, sender = params.get("To"), params.get("From")
        if not to or not sender:
            return _error(400, 21201 if not to else 21603, "To and From are required")
        try:
            data = json.loads(params.get("Parameters", "{}"))
        except ValueError:
            return _error(400, 20001, "Parameters must be JSON")
        with self._lock:
            if any(
                e["contact_channel_address"] == to and e["status"] == "active"
                for e in self.executions.values()
            ):
                return _error(409, 20409, "Execution already exists for this contact")
            self.creates += 1
            now = _iso(self.clock())
            sid = self._sid("FN")
            self.executions[sid] = {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "flow_sid": FLOW_SID,
                "contact_sid": self._sid("FX"),
                "contact_channel_address": to,
                "status": "active",
                "date_created": now,
                "date_updated": now,
                "url": f"https://studio.twilio.com/v2/Flows/{FLOW_SID}/Executions/{sid}",
            }
            self.contexts[sid] = {
                "flow": {
                    "flow_sid": FLOW_SID,
                    "sid": sid,
                    "data": data,
                    "variables": {},
                    "channel": {"address": sender},
                },
                "contact": {"channel": {"address": to}},
                "widgets": {},
            }
            if self.lose_replies > 0:
                self.lose_replies -= 1
                return _error(502, 20500, "Bad Gateway")
            return JSONResponse(self.executions[sid], status_code=201)

    async def _execution(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        with self._lock:
            execution = self.executions.get(request.path_params["sid"])
            if execution is None:
                return _error(404, 20404, "The requested resource was not found")
            if request.method == "POST":
                params = dict(await self._params(request))
                if params.get("Status") != "ended":
                    return _error(400, 20001, "Status must be ended")
                execution["status"] = "ended"
                execution["date_updated"] = _iso(self.clock())
            return JSONResponse(execution)

    async def _context(self, request: Request) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        sid = request.path_params["sid"]
        with self._lock:
            if sid not in self.contexts:
                return _error(404, 20404, "The requested resource was not found")
            return JSONResponse(
                {
                    "account_sid": ACCOUNT_SID,
                    "flow_sid": FLOW_SID,
                    "execution_sid": sid,
                    "context": self.contexts[sid],
                }
            )
