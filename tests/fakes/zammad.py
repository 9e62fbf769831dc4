"""A fake Zammad (REST API v1), as its documentation describes the endpoints qloop uses.

* ``GET /api/v1/tickets/search``: ``query`` in Zammad's (Elasticsearch)
  query syntax (here: ``field:value``, ``field:"value"``, ranges
  ``field:[A TO B]`` with ``*`` open ends, joined by ``AND``; ``*`` alone is
  everything), ``page``/``per_page`` (per_page at most 100 here),
  ``sort_by``/``order_by``; ``expand=true`` answers the list of tickets with
  names (``state``, ``priority``, ``customer``…), otherwise
  ``{"tickets": [ids], "tickets_count": N, "assets": {"Ticket": {...}}}``;
* ``GET /api/v1/tickets/{id}`` (``expand=true``), ``POST /api/v1/tickets``
  (title, group, customer, article, custom attributes such as ``qloop_key``),
  ``PUT /api/v1/tickets/{id}`` (attributes such as ``state`` by name);
* ``POST /api/v1/ticket_articles`` (``ticket_id``, ``body``, ``type`` note,
  ``internal``; 201 with the article) and
  ``GET /api/v1/ticket_articles/by_ticket/{id}`` (every article of a ticket);
  ``lose_next_article``: the article is stored but the answer is a 502;
* ``GET /api/v1/ticket_history/{id}``: ``{"history": [{"object": "Ticket",
  "type": "created"|"updated", "attribute", "value_from", "value_to",
  "created_at", "o_id"}]}``;
* token auth ``Authorization: Token token=…``; states new, open, pending
  reminder, pending close, closed, merged, removed; priorities ``1 low``,
  ``2 normal``, ``3 high``; instants UTC ``2026-10-01T06:00:00.000Z``;
* ``burst``: that many requests answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "zammad-token-123"
STATES = ["new", "open", "pending reminder", "closed"]
PRIORITIES = ["1 low", "2 normal", "3 high"]
_TERM = re.compile(r'^([\w.]+):(?:\[(\S+) TO (\S+)\]|"([^"]*)"|(\S+))$')


def z_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _instant(text: str) -> datetime | str:
    """An ISO instant as an aware datetime (``…Z``, with or without milliseconds), else text."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text


class FakeZammad:
    def __init__(self) -> None:
        self.tickets: dict[int, dict[str, Any]] = {}
        self.history: dict[int, list[dict[str, Any]]] = {}
        self.now = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
        self.calls: Counter[str] = Counter()
        self.burst = 0
        self.lose_next_create = False
        self.lose_next_article = False
        self.articles: list[dict[str, Any]] = []

    # -- data ---------------------------------------------------------------------------

    def _event(self, tid: int, at: datetime, kind: str, old: str | None, new: str | None) -> None:
        self.history.setdefault(tid, []).append({
            "id": sum(map(len, self.history.values())) + 1, "o_id": tid, "object": "Ticket",
            "type": kind, "attribute": "state" if kind == "updated" else None,
            "value_from": old, "value_to": new, "created_at": z_time(at),
        })  # fmt: skip

    def add(self, at: datetime, **fields: Any) -> dict[str, Any]:
        tid = len(self.tickets) + 1
        ticket = {
            "id": tid, "number": str(31000 + tid), "title": f"Ticket {tid}",
            "state": "new", "priority": "2 normal", "group": "Users",
            "customer": f"customer{tid % 7}@example.com", "organization": "ACME",
            "created_at": z_time(at), "updated_at": z_time(at), "close_at": None,
            "qloop_key": None, **fields,
        }  # fmt: skip
        self.tickets[tid] = ticket
        self._event(tid, at, "created", None, None)
        return ticket

    def set_state(self, tid: int, state: str, at: datetime | None = None) -> None:
        at = at or self.now
        ticket = self.tickets[tid]
        self._event(tid, at, "updated", ticket["state"], state)
        ticket["state"] = state
        ticket["updated_at"] = z_time(at)
        if state == "closed":
            ticket["close_at"] = z_time(at)

    def generate(self, n: int, seed: str, start: datetime, days: int) -> None:
        rng = random.Random(seed)
        for _ in range(n):
            at = start + timedelta(seconds=rng.randrange(days * 86400))
            ticket = self.add(
                at, priority=rng.choice(PRIORITIES), title=f"Printer {rng.random():.4f}"
            )
            steps = rng.randrange(len(STATES))
            for state in STATES[1 : steps + 1]:
                at += timedelta(minutes=rng.randrange(5, 600))
                self.set_state(ticket["id"], state, at)

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # -- search -------------------------------------------------------------------------

    def matches(self, ticket: dict[str, Any], query: str) -> bool:
        for term in [t.strip() for t in query.split(" AND ") if t.strip()]:
            if term == "*":
                continue
            match = _TERM.match(term)
            if match is None:
                raise ValueError(term)
            name, low, high, quoted, plain = match.groups()
            value = str(ticket.get(name) or "")
            if low is not None:  # Elasticsearch compares dates as instants, not as text
                at = _instant(value)
                low_ok = low == "*" or at >= _instant(low)
                if not (value and low_ok and (high == "*" or at <= _instant(high))):
                    return False
            elif value != (quoted if quoted is not None else plain):
                return False
        return True

    # -- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        def guard(request: Request) -> Response | None:
            self.calls[request.url.path] += 1
            if request.headers.get("Authorization") != f"Token token={TOKEN}":
                return JSONResponse({"error": "Authentication required"}, status_code=401)
            if self.burst > 0:
                self.burst -= 1
                return JSONResponse({"error": "Too Many Requests"}, status_code=429,
                                    headers={"Retry-After": "1"})  # fmt: skip
            return None

        async def search(request: Request) -> Response:
            if (refused := guard(request)) is not None:
                return refused
            q = request.query_params
            try:
                found = [t for t in self.tickets.values() if self.matches(t, q.get("query", ""))]
            except ValueError as exc:
                return JSONResponse({"error": f"bad query: {exc}"}, status_code=422)
            key = q.get("sort_by", "id")
            found.sort(key=lambda t: (str(t.get(key)), t["id"]),
                       reverse=q.get("order_by") == "desc")  # fmt: skip
            per_page = min(int(q.get("per_page", 50)), 100)
            page = int(q.get("page", 1))
            chunk = found[(page - 1) * per_page : page * per_page]
            if q.get("expand") == "true":
                return JSONResponse(chunk)
            return JSONResponse({
                "tickets": [t["id"] for t in chunk], "tickets_count": len(found),
                "assets": {"Ticket": {str(t["id"]): t for t in chunk}},
            })  # fmt: skip

        async def ticket(request: Request) -> Response:
            if (refused := guard(request)) is not None:
                return refused
            found = self.tickets.get(int(request.path_params["tid"]))
            if found is None:
                return JSONResponse({"error": "Not authorized"}, status_code=404)
            return JSONResponse(found)

        async def create(request: Request) -> Response:
            if (refused := guard(request)) is not None:
                return refused
            body = await request.json()
            if not body.get("title") or not body.get("group") or not body.get("customer"):
                return JSONResponse({"error": "title, group and customer are needed"},
                                    status_code=422)  # fmt: skip
            extra = {k: v for k, v in body.items() if k in ("qloop_key", "priority")}
            made = self.add(self.now, title=body["title"], group=body["group"],
                            customer=body["customer"], **extra)  # fmt: skip
            if self.lose_next_create:
                self.lose_next_create = False
                return JSONResponse({"error": "Bad Gateway"}, status_code=502)
            return JSONResponse(made, status_code=201)

        async def update(request: Request) -> Response:
            """``PUT /api/v1/tickets/{id}``: the attributes given change (a state by name)."""
            if (refused := guard(request)) is not None:
                return refused
            tid = int(request.path_params["tid"])
            if tid not in self.tickets:
                return JSONResponse({"error": "Not authorized"}, status_code=404)
            body = await request.json()
            state = body.pop("state", None)
            if state is not None and state not in {*STATES, "closed", "merged", "removed"}:
                return JSONResponse({"error": f"No lookup value found for 'state': {state!r}"},
                                    status_code=422)  # fmt: skip
            if state is not None and state != self.tickets[tid]["state"]:
                self.set_state(tid, state)
            self.tickets[tid].update({k: v for k, v in body.items() if k in ("priority", "title")})
            return JSONResponse(self.tickets[tid])

        async def add_article(request: Request) -> Response:
            """``POST /api/v1/ticket_articles``: an article (a note) on a ticket; 201."""
            if (refused := guard(request)) is not None:
                return refused
            body = await request.json()
            tid = int(body.get("ticket_id") or 0)
            if tid not in self.tickets or not str(body.get("body") or "").strip():
                return JSONResponse({"error": "ticket_id and body are needed"}, status_code=422)
            article = {
                "id": len(self.articles) + 1, "ticket_id": tid, "body": body["body"],
                "type": body.get("type", "note"), "internal": bool(body.get("internal", False)),
                "content_type": body.get("content_type", "text/plain"),
                "created_at": z_time(self.now),
            }  # fmt: skip
            self.articles.append(article)
            self.tickets[tid]["updated_at"] = z_time(self.now)
            if self.lose_next_article:
                self.lose_next_article = False
                return JSONResponse({"error": "Bad Gateway"}, status_code=502)
            return JSONResponse(article, status_code=201)

        async def articles_of(request: Request) -> Response:
            """``GET /api/v1/ticket_articles/by_ticket/{id}``: every article of a ticket."""
            if (refused := guard(request)) is not None:
                return refused
            tid = int(request.path_params["tid"])
            if tid not in self.tickets:
                return JSONResponse({"error": "Not authorized"}, status_code=404)
            return JSONResponse([a for a in self.articles if a["ticket_id"] == tid])

        async def history(request: Request) -> Response:
            if (refused := guard(request)) is not None:
                return refused
            tid = int(request.path_params["tid"])
            return JSONResponse({"history": self.history.get(tid, []), "assets": {}})

        return Starlette(routes=[
            Route("/api/v1/tickets/search", search),
            Route("/api/v1/tickets/{tid:int}", ticket),
            Route("/api/v1/tickets/{tid:int}", update, methods=["PUT"]),
            Route("/api/v1/ticket_articles", add_article, methods=["POST"]),
            Route("/api/v1/ticket_articles/by_ticket/{tid:int}", articles_of),
            Route("/api/v1/tickets", create, methods=["POST"]),
            Route("/api/v1/ticket_history/{tid:int}", history),
        ])  # fmt: skip
