"""A fake call centre / survey system that speaks Standard Webhooks (for the webhook channel).

Built from the Standard Webhooks spec, independently of ``connectors.webhook``
(its own HMAC check), so a bug in qloop's signing cannot hide in both ends:

* ``POST /tasks``: verifies ``webhook-id`` / ``webhook-timestamp`` /
  ``webhook-signature`` (any ``v1`` entry, ±tolerance), validates the body
  against ``config/webhook/task.schema.json``, and deduplicates by
  webhook-id: a repeated id gets the same 200 ``{"ref": ...}`` and no new
  task. Every verified delivery is counted in :attr:`CallCentre.deliveries`.
* ``GET /tasks/{webhook_id}``: the task's reference (200) or 404.
* ``GET /outcomes?since=&limit=&kind=``: the outcomes (of one kind) of accepted tasks as
  ``outcome.batch`` pages with a cursor (bearer token or signed GET).
* :meth:`CallCentre.signed_outcome` / :meth:`CallCentre.post_back` build
  signed outcome deliveries, as the system would POST them to qloop.

What the customers do is decided once per task, deterministically from its
idempotency key (reached on time, late, after a failed call, never; survey
answered or not), so two runs of the same month get the same outcomes.
Faults are scripted with :meth:`CallCentre.fail_next` (e.g. a 504 *after*
storing the task: the reply is lost, as with a real gateway timeout).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMAS = Path(__file__).resolve().parents[2] / "config" / "webhook"


def key_of(secret: str) -> bytes:
    """HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Delivery:
    """One verified POST /tasks (duplicates included)."""

    webhook_id: str
    idempotency_key: str
    kind: str
    duplicate: bool


@dataclass
class Task:
    ref: str
    webhook_id: str
    payload: dict[str, Any]


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    after_store: bool = False


@dataclass
class CallCentre:
    """The fake system's state and its Starlette app (:meth:`app`)."""

    task_secret: str
    outcome_secret: str
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    tolerance_s: int = 300
    poll_token: str | None = None
    seed: str = "cc"
    deliveries: list[Delivery] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    on_delivery: Callable[[int], None] | None = None
    """Called after a delivery is stored, before the reply, with the count of deliveries."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        schema = json.loads((SCHEMAS / "task.schema.json").read_text(encoding="utf-8"))
        self._task_validator = jsonschema.Draft202012Validator(schema)

    # -- scripting -------------------------------------------------------------

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    @property
    def resends(self) -> int:
        return sum(d.duplicate for d in self.deliveries)

    def keys_received(self) -> dict[str, int]:
        """Raw delivery count per idempotency key."""
        counts: dict[str, int] = {}
        for d in self.deliveries:
            counts[d.idempotency_key] = counts.get(d.idempotency_key, 0) + 1
        return counts

    # -- checks ----------------------------------------------------------------

    def _verify(self, request: Request, body: bytes) -> str | None:
        """The webhook-id of a correctly signed, fresh request, else None (rejected)."""
        msg_id = request.headers.get("webhook-id", "")
        ts = request.headers.get("webhook-timestamp", "")
        sigs = request.headers.get("webhook-signature", "").split()
        if not msg_id or not ts.isdigit() or not sigs:
            self.rejected.append((400, "missing webhook headers"))
            return None
        if abs(self.clock().timestamp() - int(ts)) > self.tolerance_s:
            self.rejected.append((401, "stale timestamp"))
            return None
        expected = signature(key_of(self.task_secret), msg_id, int(ts), body)
        if not any(hmac.compare_digest(expected, s) for s in sigs):
            self.rejected.append((401, "bad signature"))
            return None
        return msg_id

    def _read_allowed(self, request: Request) -> bool:
        if self.poll_token is not None:
            return request.headers.get("authorization") == f"Bearer {self.poll_token}"
        return self._verify(request, b"") is not None

    # -- endpoints -------------------------------------------------------------

    async def post_task(self, request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # the sender died mid-request (crash tests)
            return Response(status_code=499)
        msg_id = self._verify(request, body)
        if msg_id is None:
            return JSONResponse({"error": self.rejected[-1][1]}, status_code=self.rejected[-1][0])
        try:
            doc = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        problems = [e.message for e in self._task_validator.iter_errors(doc)]
        if problems:
            self.rejected.append((422, problems[0]))
            return JSONResponse({"error": problems}, status_code=422)
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            if fault is not None and not fault.after_store:
                return self._fault(fault)
            data = doc["data"]
            known = self.tasks.get(msg_id)
            self.deliveries.append(
                Delivery(msg_id, data["idempotency_key"], data["kind"], known is not None)
            )
            if known is None:
                known = Task(f"CC-{len(self.tasks) + 1:06d}", msg_id, data)
                self.tasks[msg_id] = known
                self.outcomes.extend(self._plan(known))
            count = len(self.deliveries)
        if self.on_delivery is not None:
            self.on_delivery(count)
        if fault is not None:
            return self._fault(fault)
        return JSONResponse({"ref": known.ref, "status": "accepted"})

    def _fault(self, fault: Fault) -> Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return JSONResponse({"error": "simulated"}, status_code=fault.status, headers=headers)

    async def get_task(self, request: Request) -> Response:
        if not self._read_allowed(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        task = self.tasks.get(request.path_params["webhook_id"])
        if task is None:
            return JSONResponse({"error": "no such task"}, status_code=404)
        return JSONResponse({"ref": task.ref})

    async def get_outcomes(self, request: Request) -> Response:
        if not self._read_allowed(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        since = int(request.query_params.get("since") or 0)
        limit = int(request.query_params.get("limit") or 100)
        kind = request.query_params.get("kind")  # one feed per channel: ?kind=survey_answer
        with self._lock:
            feed = [o for o in self.outcomes if kind is None or o["kind"] == kind]
            page = feed[since : since + limit]
            more = since + limit < len(feed)
        return JSONResponse(
            {
                "type": "outcome.batch",
                "timestamp": _utc(self.clock()),
                "data": {"outcomes": page},
                "cursor": str(since + len(page)),
                "has_more": more,
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/tasks", self.post_task, methods=["POST"]),
                Route("/tasks/{webhook_id:str}", self.get_task, methods=["GET"]),
                Route("/outcomes", self.get_outcomes, methods=["GET"]),
            ]
        )

    # -- what the customers do -------------------------------------------------

    def _plan(self, task: Task) -> list[dict[str, Any]]:
        data = task.payload
        key = data["idempotency_key"]
        base = datetime.fromisoformat(data["resolved_at"].replace("Z", "+00:00"))
        u = _unit(self.seed, key)
        strip = _unit(self.seed, key, "strip")
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        common = {
            "correlation_token": None if strip < 0.1 else data["correlation_token"],
            "idempotency_key": key,
            "provider_ref": None if strip < 0.04 else task.ref,
            "contact": data["contact"],
            "agent": "王芳",
        }
        events: list[dict[str, Any]] = []
        if data["kind"] == "callback":
            if u < 0.70:
                calls = [(2 + 18 * _unit(key, 1), True, 5 if u < 0.5 else 4)]
            elif u < 0.80:
                calls = [(30.0, True, 3)]
            elif u < 0.90:
                calls = [(3.0, False, None), (5.0, True, 2)]
            else:
                calls = [(1.0, False, None), (6.0, False, None), (12.0, False, None)]
            for hours, reached, score in calls:
                events.append(
                    {
                        "kind": "callback_attempt",
                        "occurred_at": _utc(base + timedelta(hours=hours)),
                        "reached": reached,
                        "confirmed": True if reached else None,
                        "score": score,
                        "result": "answered" if reached else "no_answer",
                        "comment": "问题解决了，谢谢" if reached else None,
                    }
                )
        elif u < 0.6:
            score = 1 + int(_unit(key, "score") * 5)
            events.append(
                {
                    "kind": "survey_answer",
                    "occurred_at": _utc(base + timedelta(hours=48)),
                    "score": score,
                    "result": "completed",
                    "comment": None if score > 3 else "响应太慢",
                }
            )
        return [{"id": f"out-{digest}-{n}", **common, **e} for n, e in enumerate(events)]

    # -- posting outcomes back -------------------------------------------------

    def signed_outcome(
        self, outcome: dict[str, Any], *, at: datetime | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """One ``outcome.reported`` delivery (webhook-id = the outcome's id), signed."""
        item = {k: v for k, v in outcome.items() if k != "id"}
        doc = {"type": "outcome.reported", "timestamp": _utc(self.clock()), "data": item}
        return self.sign(outcome["id"], doc, at=at, secret=secret)

    def signed_batch(
        self, batch_id: str, outcomes: list[dict[str, Any]]
    ) -> tuple[dict[str, str], bytes]:
        doc = {
            "type": "outcome.batch",
            "timestamp": _utc(self.clock()),
            "data": {"outcomes": outcomes},
        }
        return self.sign(batch_id, doc)

    def sign(
        self,
        msg_id: str,
        doc: Any,
        *,
        at: datetime | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        ts = int((at or self.clock()).timestamp())
        key = key_of(secret or self.outcome_secret)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature(key, msg_id, ts, body),
            "content-type": "application/json",
        }
        return headers, body

    def post_back(self, deliver: Callable[[dict[str, str], bytes], Any]) -> int:
        """Deliver every outcome, one signed delivery each, to ``deliver``; returns how many."""
        with self._lock:
            pending = list(self.outcomes)
        for outcome in pending:
            deliver(*self.signed_outcome(outcome))
        return len(pending)
