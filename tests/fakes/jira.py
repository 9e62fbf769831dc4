"""A fake Jira Cloud + Service Management server (Starlette), faithful where qloop relies on it.

It holds deterministic in-memory issues (Chinese and Latin names, reopens,
changelogs longer than the ``expand=changelog`` cap) and answers the calls
the ``jira_sm`` connector makes, with Jira's shapes and quirks:

* ``/rest/api/3/search/jql`` (GET and POST): opaque ``nextPageToken`` that is
  *absent* on the last page, ``fields`` defaulting to ``id`` only, a JQL
  subset (``AND``/``OR``/parentheses; ``project``, ``issuetype``, ``labels``,
  ``key``, ``status``, ``created``/``updated`` with epoch ms or profile-zone
  literals to the minute; ``ORDER BY``), unbounded queries refused, and an
  index that lags behind creates unless ``reconcileIssues`` names them;
  the removed ``/rest/api/3/search`` answers 410;
* ``/myself`` with a non-UTC profile ``timeZone``; ``/serverInfo``;
  ``approximate-count`` (same JQL, bounded); ``mypermissions``; paged
  ``/issue/{key}/changelog``; issue create (ADF required, labels,
  ``update.issuelinks``, ``properties``) whose issues are ordinary issues that
  any search of their project finds, issue GET, properties, ``issueLink``;
  JSM ``/servicedeskapi/info``, ``/request/{key}/sla`` (a new resolution
  cycle at each reopen: ``completedCycles`` plus ``ongoingCycle``) and
  ``/participant``; ``/rest/api/3/field`` (system fields and custom ones, among them
  JSM's two SLA fields, whose values in a search or issue GET are the same metric
  objects as the SLA endpoint's, ``null`` on an issue that is not a request);
  issue comments (ADF, paged) and workflow transitions
  (``GET``/``POST …/transitions``, 204; an id not offered now is a 400);
  JQL ``IN``/``NOT IN``/``IS [NOT] EMPTY``, where ``!=`` and ``NOT IN``
  never match an empty field, as in Jira; ``key =``/``key in`` naming an
  issue that does not exist (deleted) fails the whole query with a 400;
* errors in Jira's shape (``errorMessages`` + ``errors``) for 400/401/403/404;
  429 storms with ``Retry-After`` (seconds or HTTP date); Jira's burst limiter
  (``ratelimit``: a 429 block that every early call extends, optionally a
  random share of 429s); per-request latency.

Tests drive it through :class:`FakeJira` (``update_issue``, ``set_status``,
knobs such as ``latency_ms``, ``throttle``, ``fail_create_replies``,
``index_lag``) and serve ``fake.app`` with :func:`tests.fakes.server.serve`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tests.fakes.ratelimit import BurstLimiter

STATUSES: dict[str, tuple[str, int, str]] = {
    "Waiting for support": ("new", 2, "10001"),
    "Open": ("new", 2, "1"),
    "In Progress": ("indeterminate", 4, "3"),
    "Waiting for customer": ("indeterminate", 4, "10002"),
    "Resolved": ("done", 3, "5"),
    "Closed": ("done", 3, "6"),
    "Canceled": ("done", 3, "10003"),
    "Done": ("done", 3, "10004"),
    "Triage": ("new", 2, "10005"),  # not in the default mapping's status_map
}
SUMMARIES = [
    "VPN 每 10 分钟断开一次",
    "Printer on 3F offline",
    "邮箱无法登录 Outlook",
    "ERP invoice export fails with timeout",
    "会议室投影仪无信号",
    "Laptop won't boot after BIOS update",
    "财务系统报表导出乱码",
    "Wi-Fi drops in building B",
]
PEOPLE = [
    ("张伟", "zhang.wei@example.cn", "+86 138 0013 8000"),
    ("王芳", None, "+86 139 1111 2222"),
    ("Jane Doe", "jane.doe@example.com", "+44 20 7946 0018"),
    ("Émile Müller", "emile.muller@example.fr", None),
    ("李娜", "李娜@example.cn", "+86 137 2222 3333"),
    ("陈静", "chen.jing@example.cn", "+86 136 4444 5555"),
]
PRIORITIES = ["Highest", "High", "Medium", "Medium", "Low"]
ORGS = ["上海分公司", "Beijing Branch", "深圳研发中心"]
COMPONENTS = ["Network", "Email", "ERP", "Workplace"]
LINK_TYPES = {"Relates", "Blocks", "Duplicate", "Cloners"}
ISSUE_TYPES = {"Incident", "Service request", "Task", "Nonconformity"}
PHONE_FIELD = "customfield_10042"
ORG_FIELD = "customfield_10002"
SLA_FIELDS = {"customfield_10030": 1, "customfield_10031": 2}
"""JSM's SLA custom fields (``schema.custom`` ``com.atlassian.servicedesk:sd-sla-field``):
field id → the metric id of ``/request/{key}/sla`` they hold."""
SLA_TYPE = "com.atlassian.servicedesk:sd-sla-field"
TRANSITIONS = (
    ("11", "Start Progress", "In Progress"),
    ("21", "Resolve Issue", "Resolved"),
    ("31", "Close Issue", "Closed"),
    ("41", "Reopen Issue", "Open"),
)
"""The workflow of the fake's issues: (id, name, target status); each is offered from every
status but its own target."""
REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)


def source_options(url: str, **overrides: Any) -> dict[str, Any]:
    """Options of a ``jira_sm`` source pointed at a fake served at ``url``."""
    opts: dict[str, Any] = {
        "base_url": url,
        "auth": {"email": "ops@example.com", "api_token": "api-token-123"},
        "jql": "project = ITSD AND issuetype = Incident",
        "page_size": 20,
        "rate": 0,
        "contact": PHONE_FIELD,
        "ticket": {"project": "QA", "issue_type": "Task", "labels": ["qloop-nc"]},
    }
    opts.update(overrides)
    return {k: v for k, v in opts.items() if v is not None}


def fmt_ms(ms: int, zone: ZoneInfo) -> str:
    """Jira's date format: ``2026-03-03T15:05:40.512+0100`` in the account's zone."""
    at = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + at.strftime("%z")


def ms_of(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def error(status: int, *messages: str, **errors: str) -> JSONResponse:
    return JSONResponse({"errorMessages": list(messages), "errors": errors}, status_code=status)


class JqlError(ValueError):
    """The fake's parser refused the query (a 400 in Jira)."""


@dataclass
class FakeIssue:
    id: int
    key: str
    project: str
    issuetype: str
    summary: str
    priority: str
    created: int
    reporter: dict[str, Any]
    status: str = "Waiting for support"
    updated: int = 0
    histories: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    participants: list[dict[str, Any]] = field(default_factory=list)
    resolutiondate: int | None = None
    visible_from: int = 0
    is_request: bool = True
    description: Any = None
    comments: list[dict[str, Any]] = field(default_factory=list)

    def status_changes(self) -> list[tuple[int, str]]:
        out = [(self.created, "Waiting for support" if self.is_request else "Open")]
        for h in self.histories:
            out += [(h["ms"], i["toString"]) for i in h["items"] if i["field"] == "status"]
        return out


class FakeJira:
    """State and knobs of the fake; ``app`` is the ASGI application.

    Args:
        issues: How many incidents to generate in project ``project``.
        seed: Generator seed (same seed, same issues).
        profile_zone: The account's profile time zone (``/myself``).
        start: Earliest creation instant.
        expand_cap: Histories embedded by ``expand=changelog`` (Jira: ~40).
        busy_every: Every n-th issue gets more histories than ``expand_cap`` (its
            expanded changelog is cut); 0: none.
        cloud_id: Also serve under ``/ex/jira/{cloud_id}`` (the API gateway form).
    """

    def __init__(
        self,
        *,
        issues: int = 60,
        seed: str = "jira",
        project: str = "ITSD",
        ticket_project: str = "QA",
        profile_zone: str = "Asia/Shanghai",
        start: datetime = datetime(2026, 10, 1, tzinfo=UTC),
        expand_cap: int = 40,
        busy_every: int = 7,
        email: str = "ops@example.com",
        api_token: str = "api-token-123",
        bearer_token: str = "bearer-xyz",
        cloud_id: str = "c0ffee",
    ) -> None:
        self.zone = ZoneInfo(profile_zone)
        self.project, self.ticket_project = project, ticket_project
        self.expand_cap = expand_cap
        self.busy_every = busy_every
        self.email, self.api_token, self.bearer_token = email, api_token, bearer_token
        self.lock = threading.Lock()
        self.issues: dict[str, FakeIssue] = {}
        self.counters: dict[str, int] = {}
        self.next_id = 10000
        self.requests = 0
        self.searches = 0
        self.throttled = 0
        self.log: list[tuple[str, str]] = []
        self.latency_ms = 0.0
        self.throttle: tuple[int, int, str] | None = None
        """(every, burst, retry_after): requests n with n % every < burst get 429."""
        self.ratelimit: BurstLimiter | None = None
        """Jira's burst limiter (tests/fakes/ratelimit.py): early calls extend a 429 block."""
        self.fail_create_replies = 0
        """Creates that store the issue but answer 500 (the reply is lost)."""
        self.index_lag = 0
        """Searches a created issue stays invisible for (unless reconcileIssues names it)."""
        self.page_cap: int | None = None
        """The most issues a search page holds (Jira may answer fewer than ``maxResults``)."""
        self.can_create = {project: True, ticket_project: True}
        self.service_desk = True
        """Jira Service Management on the site (False: /rest/servicedeskapi/* answers 404)."""
        self.sla_fields = True
        """JSM's SLA fields listed by ``/field`` and served in issues (False: an older site)."""
        self.sla_now: int | None = None
        """The instant (ms) ongoing SLA cycles are judged at (None: never breached yet)."""
        self.server_url = "http://127.0.0.1"
        self._version = 0
        """Bumped by every change of an issue: a cached search result is then stale."""
        self._hits: dict[str, tuple[int, list[FakeIssue]]] = {}
        """Recent queries' sorted hits, for their next pages (a first page always scans)."""
        self._render_cache: dict[tuple[Any, ...], bytes] = {}
        self._render_version = 0
        self._lagging = 0
        """The search count until which a created issue is still invisible (index lag)."""
        self._generate(issues, seed, start)
        routes = self._routes()
        self.app = Starlette(routes=[*routes, Mount(f"/ex/jira/{cloud_id}", routes=routes)])

    # -- data -----------------------------------------------------------------

    def _new_key(self, project: str) -> tuple[int, str]:
        self._version += 1
        self.next_id += 1
        self.counters[project] = self.counters.get(project, 0) + 1
        return self.next_id, f"{project}-{self.counters[project]}"

    def _generate(self, n: int, seed: str, start: datetime) -> None:
        rng = random.Random(seed)
        created = sorted(ms_of(start) + rng.randrange(0, 20 * 86_400_000) for _ in range(n))
        for i, at in enumerate(created):
            name, email, phone = PEOPLE[rng.randrange(len(PEOPLE))]
            ident, key = self._new_key(self.project)
            issue = FakeIssue(
                id=ident,
                key=key,
                project=self.project,
                issuetype="Incident",
                summary=SUMMARIES[rng.randrange(len(SUMMARIES))],
                priority=PRIORITIES[rng.randrange(len(PRIORITIES))],
                created=at,
                updated=at,
                reporter={
                    "accountId": f"qm:{hashlib.sha1(name.encode()).hexdigest()[:12]}",
                    "displayName": name,
                    "emailAddress": email,
                    "accountType": "customer",
                },
                extra={
                    PHONE_FIELD: phone,
                    ORG_FIELD: [{"id": str(i % 3 + 1), "name": ORGS[i % 3]}],
                    "components": [{"name": COMPONENTS[i % 4]}],
                },
            )
            if i % 4 == 0:
                issue.participants = [
                    {"accountId": "qm:p1", "displayName": "Li Lei", "emailAddress": None},
                    {"accountId": "qm:p2", "displayName": "韩梅梅", "emailAddress": "han@ex.cn"},
                ]
            self.issues[key] = issue
            busy = bool(self.busy_every) and i % self.busy_every == 3 % self.busy_every
            self._live(issue, rng, long_changelog=busy)

    def _live(self, issue: FakeIssue, rng: random.Random, long_changelog: bool) -> None:
        t = issue.created
        steps = ["In Progress"]
        if rng.random() < 0.3:
            steps += ["Waiting for customer", "In Progress"]
        outcome = rng.random()
        if outcome < 0.1:
            steps.append("Canceled")
        elif outcome < 0.85:
            steps.append("Resolved")
            if rng.random() < 0.25:
                steps += ["In Progress", "Resolved"]  # a reopen
            if rng.random() < 0.5:
                steps.append("Closed")
        if long_changelog:  # busy issues: many non-status changes before the workflow
            for j in range(self.expand_cap + 5):
                t += rng.randrange(60_000, 600_000)
                self._history(issue, t, "assignee", f"agent-{j}", f"agent-{j + 1}")
        for status in steps:
            t += rng.randrange(5 * 60_000, 30 * 3_600_000)
            self._move(issue, t, status)

    def _history(self, issue: FakeIssue, ms: int, fld: str, old: Any, new: Any) -> None:
        self._version += 1
        self.next_id += 1
        item = {
            "field": fld,
            "fieldtype": "jira",
            "fieldId": fld,
            "from": None,
            "fromString": old,
            "to": None,
            "toString": new,
        }
        issue.histories.append({"id": str(self.next_id), "ms": ms, "items": [item]})
        issue.updated = max(issue.updated, ms)

    def _move(self, issue: FakeIssue, ms: int, status: str) -> None:
        old = issue.status
        self._history(issue, ms, "status", old, status)
        item = issue.histories[-1]["items"][0]
        item["from"], item["to"] = STATUSES[old][2], STATUSES[status][2]
        issue.status = status
        done = STATUSES[status][0] == "done"
        if done and STATUSES[old][0] != "done":
            issue.resolutiondate = ms
        elif not done:
            issue.resolutiondate = None

    # -- test helpers -----------------------------------------------------------

    def update_issue(self, key: str, at: datetime, status: str | None = None) -> None:
        """Change issue ``key`` at instant ``at``: a status move, else a comment-like edit."""
        with self.lock:
            issue = self.issues[key]
            if status is not None:
                self._move(issue, ms_of(at), status)
            else:
                self._history(issue, ms_of(at), "labels", "", f"touched-{ms_of(at)}")

    def add_incident(self, created: datetime, priority: str = "Medium") -> str:
        """One more incident of the project, opened at ``created`` (Waiting for support)."""
        with self.lock:
            ident, key = self._new_key(self.project)
            name, email, phone = PEOPLE[ident % len(PEOPLE)]
            self.issues[key] = FakeIssue(
                id=ident,
                key=key,
                project=self.project,
                issuetype="Incident",
                summary=SUMMARIES[ident % len(SUMMARIES)],
                priority=priority,
                created=ms_of(created),
                updated=ms_of(created),
                reporter={
                    "accountId": f"qm:{ident}",
                    "displayName": name,
                    "emailAddress": email,
                    "accountType": "customer",
                },
                extra={
                    PHONE_FIELD: phone,
                    ORG_FIELD: [{"id": "1", "name": ORGS[0]}],
                    "components": [{"name": COMPONENTS[0]}],
                },
            )
            return key

    def set_status(self, key: str, status: str, at: datetime) -> None:
        """Transition an issue (e.g. a created ticket to Done)."""
        self.update_issue(key, at, status)

    def tickets(self) -> list[FakeIssue]:
        """Issues created through the API (in the ticket project)."""
        return [i for i in self.issues.values() if i.project == self.ticket_project]

    def latest_update(self) -> datetime:
        return datetime.fromtimestamp(max(i.updated for i in self.issues.values()) / 1000, UTC)

    # -- rendering -----------------------------------------------------------------

    def _fields(self, issue: FakeIssue, wanted: list[str]) -> dict[str, Any]:
        cat, cat_id, status_id = STATUSES[issue.status]
        everything: dict[str, Any] = {
            "summary": issue.summary,
            "issuetype": {"name": issue.issuetype},
            "project": {"key": issue.project},
            "status": {
                "id": status_id,
                "name": issue.status,
                "statusCategory": {"id": cat_id, "key": cat},
            },
            "priority": {"name": issue.priority},
            "created": fmt_ms(issue.created, self.zone),
            "updated": fmt_ms(issue.updated, self.zone),
            "resolutiondate": None
            if issue.resolutiondate is None
            else fmt_ms(issue.resolutiondate, self.zone),
            "statuscategorychangedate": fmt_ms(issue.status_changes()[-1][0], self.zone),
            "reporter": issue.reporter,
            "labels": list(issue.labels),
            "description": issue.description,
            "issuelinks": issue.links,
            **issue.extra,
        }
        if self.service_desk and self.sla_fields:
            wants = set(wanted)
            metrics: list[Any] | None = None
            for fid in SLA_FIELDS:
                if fid in wants or "*all" in wants:
                    if metrics is None:
                        metrics = self._sla_metrics(issue) if issue.is_request else []
                    everything[fid] = self._sla_field(metrics, SLA_FIELDS[fid])
        if any(w in ("*all", "*navigable") for w in wanted):
            return everything
        return {w: everything.get(w) for w in wanted if w in everything and w != "id"}

    def _sla_field(self, metrics: list[dict[str, Any]], ident: int) -> dict[str, Any] | None:
        """An SLA field's value: the metric with that id, as the SLA endpoint gives it."""
        found = next((m for m in metrics if m["id"] == str(ident)), None)
        if found is None:
            return None
        return {
            **found,
            "_links": {"self": f"{self.server_url}/rest/servicedeskapi/request/sla/{ident}"},
            "slaDisplayFormat": "NEW_SLA_FORMAT",
        }

    def _history_json(self, h: dict[str, Any]) -> dict[str, Any]:
        author = {"accountId": "agent", "displayName": "Service Agent"}
        return {
            "id": h["id"],
            "author": author,
            "created": fmt_ms(h["ms"], self.zone),
            "items": h["items"],
        }

    def _issue_json(self, issue: FakeIssue, wanted: list[str], expand: str) -> dict[str, Any]:
        if not wanted:
            return {"id": str(issue.id)}
        out: dict[str, Any] = {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.server_url}/rest/api/3/issue/{issue.id}",
            "fields": self._fields(issue, wanted),
        }
        if "changelog" in expand:
            hs = [self._history_json(h) for h in issue.histories]
            out["changelog"] = {
                "startAt": 0,
                "maxResults": self.expand_cap,
                "total": len(hs),
                "histories": hs[: self.expand_cap],
            }
        return out

    # -- JQL ---------------------------------------------------------------------

    def _date(self, value: str, fld: str) -> int:
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        for pattern in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
            try:
                local = datetime.strptime(value, pattern)
            except ValueError:
                continue
            return ms_of(local.replace(tzinfo=self.zone))
        msg = (
            f"Date value '{value}' for field '{fld}' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )
        raise JqlError(msg)

    def _clause(self, fld: str, op: str, value: str | list[str]) -> Callable[[FakeIssue], bool]:
        name = fld.casefold()
        if name in ("updated", "created"):
            if isinstance(value, list):
                raise JqlError(f"The operator '{op}' is not supported by the '{fld}' field.")
            limit = self._date(value, fld)
            ops: dict[str, Callable[[int], bool]] = {
                ">=": lambda v: v >= limit,
                ">": lambda v: v > limit,
                "<": lambda v: v < limit,
                "<=": lambda v: v <= limit,
                "=": lambda v: v == limit,
            }
            if op not in ops:
                raise JqlError(f"The operator '{op}' is not supported by the '{fld}' field.")
            check = ops[op]
            return lambda i: check(i.updated if name == "updated" else i.created)
        getters: dict[str, Callable[[FakeIssue], list[str]]] = {
            "project": lambda i: [i.project],
            "issuetype": lambda i: [i.issuetype],
            "type": lambda i: [i.issuetype],
            "labels": lambda i: i.labels,
            "key": lambda i: [i.key],
            "issuekey": lambda i: [i.key],
            "status": lambda i: [i.status],
        }
        if name not in getters:
            raise JqlError(
                f"Field '{fld}' does not exist or you do not have permission to view it."
            )
        projects = {i.project for i in self.issues.values()} | set(self.can_create)
        if name == "project" and isinstance(value, str) and value not in projects:
            raise JqlError(f"The value '{value}' does not exist for the field 'project'.")
        get = getters[name]
        values = [v.casefold() for v in (value if isinstance(value, list) else [value])]
        if name in ("key", "issuekey") and (op == "=" or op.upper() == "IN"):
            known = {k.casefold() for k in self.issues}
            for v in value if isinstance(value, list) else [value]:
                if v.casefold() not in known:  # Jira: a missing issue fails the whole query
                    raise JqlError(f"An issue with key '{v}' does not exist for field 'key'.")
        if op.upper() in ("IS", "IS NOT"):
            if values != ["empty"] and values != ["null"]:
                raise JqlError(f"The operator '{op}' only takes EMPTY for field '{fld}'.")
            empty = op.upper() == "IS"
            return lambda i: (not get(i)) == empty
        if op == "=" or op.upper() == "IN":
            return lambda i: any(v.casefold() in values for v in get(i))
        if op == "!=" or op.upper() == "NOT IN":
            # Jira: "!=" and NOT IN never match an empty field ("... OR field IS EMPTY")
            return lambda i: bool(get(i)) and all(v.casefold() not in values for v in get(i))
        raise JqlError(f"The operator '{op}' is not supported by the '{fld}' field.")

    def parse_jql(self, jql: str) -> tuple[Callable[[FakeIssue], bool], list[tuple[str, bool]]]:
        """A predicate and the ORDER BY list (field, ascending) of a JQL subset."""
        tokens = re.findall(r'"(?:[^"\\]|\\.)*"|>=|<=|!=|[=<>(),~]|[^\s=<>!(),~"]+', jql)
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise JqlError("Error in the JQL Query: Expecting more input at the end.")
            pos += 1
            return tokens[pos - 1]

        def word(tok: str) -> str:
            return tok[1:-1].replace('\\"', '"') if tok.startswith('"') else tok

        def expr() -> Callable[[FakeIssue], bool]:
            parts = [term()]
            while (peek() or "").upper() == "OR":
                take()
                parts.append(term())
            return parts[0] if len(parts) == 1 else lambda i: any(p(i) for p in parts)

        def term() -> Callable[[FakeIssue], bool]:
            parts = [factor()]
            while (peek() or "").upper() == "AND":
                take()
                parts.append(factor())
            return parts[0] if len(parts) == 1 else lambda i: all(p(i) for p in parts)

        def factor() -> Callable[[FakeIssue], bool]:
            tok = take()
            if tok == "(":
                inner = expr()
                if take() != ")":
                    raise JqlError("Error in the JQL Query: Expecting ')'.")
                return inner
            if tok.upper() == "NOT":
                inner = factor()
                return lambda i: not inner(i)
            fld, op = word(tok), take()
            if op.upper() == "IS":
                if (peek() or "").upper() == "NOT":
                    take()
                    op = "IS NOT"
                return self._clause(fld, op, word(take()))
            if op.upper() == "NOT":
                if take().upper() != "IN":
                    raise JqlError("Error in the JQL Query: Expecting 'IN' after 'NOT'.")
                op = "NOT IN"
            if op.upper() in ("IN", "NOT IN"):
                if take() != "(":
                    raise JqlError(f"Error in the JQL Query: Expecting '(' after '{op}'.")
                items = [word(take())]
                while peek() == ",":
                    take()
                    items.append(word(take()))
                if take() != ")":
                    raise JqlError("Error in the JQL Query: Expecting ')'.")
                return self._clause(fld, op.upper(), items)
            return self._clause(fld, op, word(take()))

        predicate: Callable[[FakeIssue], bool] | None = None
        if peek() is not None and (peek() or "").upper() != "ORDER":
            predicate = expr()
        order: list[tuple[str, bool]] = []
        if (peek() or "").upper() == "ORDER":
            take()
            if take().upper() != "BY":
                raise JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
            while True:
                fld = take().casefold()
                asc = True
                if (peek() or "").upper() in ("ASC", "DESC"):
                    asc = take().upper() == "ASC"
                order.append((fld, asc))
                if peek() != ",":
                    break
                take()
        if peek() is not None:
            raise JqlError(f"Error in the JQL Query: unexpected '{peek()}'.")
        if predicate is None:
            raise JqlError(
                "Unbounded JQL queries are not allowed here. "
                "Please add a search restriction to your query."
            )
        return predicate, order

    def _sorted(self, issues: list[FakeIssue], order: list[tuple[str, bool]]) -> list[FakeIssue]:
        def sort_key(fld: str) -> Callable[[FakeIssue], Any]:
            if fld in ("key", "issuekey"):
                return lambda i: (i.project, int(i.key.rsplit("-", 1)[1]))
            if fld in ("updated", "created"):
                return lambda i: getattr(i, fld)
            raise JqlError(f"Not able to sort using field '{fld}'.")

        out = sorted(issues, key=lambda i: i.id)
        for fld, asc in reversed(order or [("created", False)]):
            out.sort(key=sort_key(fld), reverse=not asc)
        return out

    # -- HTTP ----------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        pair = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        return header in (f"Basic {pair}", f"Bearer {self.bearer_token}")

    def _guard(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            limiter = self.ratelimit
            refused = limiter.check(request.method, request.url.path) if limiter else None
            if refused is not None:
                with self.lock:
                    self.throttled += 1
                return refused
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000)
            with self.lock:
                self.requests += 1
                n = self.requests
                self.log.append((request.method, request.url.path))
            if self.throttle is not None:
                every, burst, wait = self.throttle
                if n % every < burst:
                    self.throttled += 1
                    if wait == "date":
                        when = datetime.now(UTC) + timedelta(seconds=1)
                        wait = format_datetime(when, usegmt=True)
                    headers = {"Retry-After": wait, "RateLimit-Reason": "jira-burst-based"}
                    body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
                    return JSONResponse(body, status_code=429, headers=headers)
            if not self._authorised(request):
                return error(401, "Client must be authenticated to access this resource.")
            try:
                return await handler(request)
            except JqlError as exc:
                return error(400, str(exc))

        return wrapped

    def _routes(self) -> list[Route]:
        g = self._guard
        return [
            Route("/rest/api/3/myself", g(self.myself)),
            Route("/rest/api/3/serverInfo", g(self.server_info)),
            Route("/rest/servicedeskapi/info", g(self.servicedesk_info)),
            Route("/rest/api/3/search", g(self.removed_search), methods=["GET", "POST"]),
            Route("/rest/api/3/search/jql", g(self.search), methods=["GET", "POST"]),
            Route("/rest/api/3/search/approximate-count", g(self.count), methods=["POST"]),
            Route("/rest/api/3/mypermissions", g(self.permissions)),
            Route("/rest/api/3/field", g(self.field_list)),
            Route("/rest/api/3/issue", g(self.create), methods=["POST"]),
            Route("/rest/api/3/issue/{key}", g(self.get_issue)),
            Route("/rest/api/3/issue/{key}/changelog", g(self.changelog)),
            Route(
                "/rest/api/3/issue/{key}/properties/{prop}", g(self.prop), methods=["GET", "PUT"]
            ),
            Route("/rest/api/3/issueLink", g(self.link), methods=["POST"]),
            Route("/rest/api/3/issue/{key}/comment", g(self.comment), methods=["GET", "POST"]),
            Route(
                "/rest/api/3/issue/{key}/transitions",
                g(self.transitions),
                methods=["GET", "POST"],
            ),
            Route("/rest/servicedeskapi/request/{key}/sla", g(self.sla)),
            Route("/rest/servicedeskapi/request/{key}/participant", g(self.participants)),
        ]

    def _issue_or_404(self, key: str) -> FakeIssue | JSONResponse:
        issue = self.issues.get(key) or next(
            (i for i in self.issues.values() if str(i.id) == key), None
        )
        if issue is None:
            return error(404, "Issue does not exist or you do not have permission to see it.")
        return issue

    async def myself(self, request: Request) -> Response:
        return JSONResponse(
            {
                "accountId": "5b10a2844c20165700ede21g",
                "accountType": "atlassian",
                "emailAddress": self.email,
                "displayName": "QA Robot 质检",
                "active": True,
                "timeZone": self.zone.key,
                "locale": "en_US",
            }
        )

    async def server_info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "baseUrl": self.server_url,
                "displayUrl": self.server_url,
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "deploymentType": "Cloud",
                "buildNumber": 100295,
                "serverTitle": "Jira",
            }
        )

    async def servicedesk_info(self, request: Request) -> Response:
        if not self.service_desk:
            return error(404, "null for uri: /rest/servicedeskapi/info")
        return JSONResponse(
            {
                "version": "10.5.0",
                "platformVersion": "1001.0.0",
                "isLicensedForUse": True,
                "_links": {"self": f"{self.server_url}/rest/servicedeskapi/info"},
            }
        )

    async def field_list(self, request: Request) -> Response:
        """``GET /rest/api/3/field``: a few system fields, the custom ones, JSM's SLA fields."""

        def system(ident: str, name: str, kind: str) -> dict[str, Any]:
            return {
                "id": ident,
                "key": ident,
                "name": name,
                "custom": False,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [ident],
                "schema": {"type": kind, "system": ident},
            }

        def custom(ident: str, name: str, kind: str, custom_type: str) -> dict[str, Any]:
            number = int(ident.rsplit("_", 1)[1])
            return {
                "id": ident,
                "key": ident,
                "name": name,
                "untranslatedName": name,
                "custom": True,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [f"cf[{number}]", name],
                "schema": {"type": kind, "custom": custom_type, "customId": number},
            }

        out = [
            system("summary", "Summary", "string"),
            system("status", "Status", "status"),
            system("priority", "Priority", "priority"),
            system("updated", "Updated", "datetime"),
            system("labels", "Labels", "array"),
            custom(
                PHONE_FIELD,
                "Callback phone",
                "string",
                "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
            ),
        ]
        if self.service_desk:
            out.append(
                custom(
                    ORG_FIELD,
                    "Organizations",
                    "array",
                    "com.atlassian.servicedesk:sd-customer-organizations",
                )
            )
            if self.sla_fields:
                names = {1: "Time to first response", 2: "Time to resolution"}
                for fid, metric in SLA_FIELDS.items():
                    out.append(custom(fid, names[metric], "sd-servicelevelagreement", SLA_TYPE))
        return JSONResponse(out)

    async def removed_search(self, request: Request) -> Response:
        return error(410, REMOVED)

    async def search(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
        else:
            q = request.query_params
            body = {
                k: q[k]
                for k in ("jql", "nextPageToken", "maxResults", "fields", "expand")
                if k in q
            }
            if "reconcileIssues" in q:
                body["reconcileIssues"] = [int(x) for x in q["reconcileIssues"].split(",")]
        wanted = body.get("fields") or []
        if isinstance(wanted, str):
            wanted = [w.strip() for w in wanted.split(",") if w.strip()]
        expand = body.get("expand") or ""
        expand = ",".join(expand) if isinstance(expand, list) else str(expand)
        size = min(int(body.get("maxResults") or 50), 100 if wanted else 5000)
        size = min(size, self.page_cap or size)
        jql = str(body.get("jql") or "")
        predicate, order = self.parse_jql(jql)
        digest = hashlib.sha256(jql.encode()).hexdigest()[:10]
        offset = 0
        if body.get("nextPageToken"):
            try:
                doc = json.loads(base64.urlsafe_b64decode(str(body["nextPageToken"])))
                offset, ok = int(doc["o"]), doc["q"] == digest
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                return error(400, "The provided next page token is invalid or expired.")
        with self.lock:
            self.searches += 1
            reconcile = {int(x) for x in body.get("reconcileIssues") or []}
            paging = bool(body.get("nextPageToken")) and not reconcile
            known = self._hits.get(jql) if paging else None
            if known is not None and known[0] == self._version and self._lagging <= self.searches:
                hits = known[1]  # a next page of an unchanged result: no new scan of every issue
            else:
                hits = [
                    i
                    for i in self.issues.values()
                    if (i.visible_from <= self.searches or i.id in reconcile) and predicate(i)
                ]
                hits = self._sorted(hits, order)
                if not reconcile and self._lagging <= self.searches:
                    self._hits.pop(jql, None)
                    self._hits[jql] = (self._version, hits)  # newest last
                    while len(self._hits) > 32:  # concurrent windows each keep theirs
                        del self._hits[next(iter(self._hits))]
            shape = (tuple(wanted), expand)
            page = [self._rendered(i, shape) for i in hits[offset : offset + size]]
        out: dict[str, Any] = {"isLast": offset + size >= len(hits)}
        if not out["isLast"]:
            token = json.dumps({"o": offset + size, "q": digest, "n": self.searches})
            out["nextPageToken"] = base64.urlsafe_b64encode(token.encode()).decode()
        tail = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
        content = b'{"issues":[' + b",".join(page) + b"]," + tail[1:]
        return Response(content, media_type="application/json")

    def _rendered(self, issue: FakeIssue, shape: tuple[tuple[str, ...], str]) -> bytes:
        """An issue's JSON as a search renders it, kept until any issue changes (a 50k
        benchmark must measure the client, not the fake's rendering)."""
        if self._render_version != self._version or self.sla_now is not None:
            self._render_cache.clear()  # an ongoing SLA cycle's elapsed time moves with sla_now
            self._render_version = self._version
        state = (issue.updated, len(issue.histories), issue.status, tuple(issue.labels))
        knobs = (self.server_url, self.expand_cap, self.service_desk, self.sla_fields)
        key = (issue.key, *state, *knobs, *shape)
        found = self._render_cache.get(key)
        if found is None:
            doc = self._issue_json(issue, list(shape[0]), shape[1])
            found = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            self._render_cache[key] = found
        return found

    async def count(self, request: Request) -> Response:
        predicate, _ = self.parse_jql(str((await request.json()).get("jql") or ""))
        with self.lock:
            return JSONResponse({"count": sum(1 for i in self.issues.values() if predicate(i))})

    async def permissions(self, request: Request) -> Response:
        keys = request.query_params.get("permissions")
        project = request.query_params.get("projectKey")
        if not keys:
            return error(400, "The 'permissions' query parameter is required.")
        if project is not None and project not in self.can_create:
            return error(404, f"No project could be found with key '{project}'.")
        allowed = self.can_create.get(project or "", False)
        perms = {
            k: {
                "id": str(n),
                "key": k,
                "name": k.title().replace("_", " "),
                "type": "PROJECT",
                "havePermission": allowed,
            }
            for n, k in enumerate(keys.split(","), 10)
        }
        return JSONResponse({"permissions": perms})

    def _validate_create(self, body: dict[str, Any]) -> dict[str, str]:
        fields = body.get("fields") or {}
        errs: dict[str, str] = {}
        project = (fields.get("project") or {}).get("key")
        if project not in self.can_create:
            errs["project"] = "valid project is required"
        if (fields.get("issuetype") or {}).get("name") not in ISSUE_TYPES:
            errs["issuetype"] = "Specify a valid issue type"
        if not str(fields.get("summary") or "").strip():
            errs["summary"] = "You must specify a summary of the issue."
        desc = fields.get("description")
        if desc is not None and not _is_adf(desc):
            errs["description"] = (
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            )
        for label in fields.get("labels") or []:
            if re.search(r"\s", label):
                errs["labels"] = f"The label '{label}' contains spaces which is invalid."
        for link in (body.get("update") or {}).get("issuelinks") or []:
            add = link.get("add") or {}
            if (add.get("type") or {}).get("name") not in LINK_TYPES:
                errs["issuelinks"] = f"No issue link type with name '{add.get('type')}' found."
            other = (add.get("outwardIssue") or add.get("inwardIssue") or {}).get("key")
            if other not in self.issues:
                errs["issuelinks"] = f"Issue '{other}' does not exist."
        return errs

    async def create(self, request: Request) -> Response:
        body = await request.json()
        errs = self._validate_create(body)
        if errs:
            return error(400, **errs)
        fields = body["fields"]
        project = fields["project"]["key"]
        if not self.can_create[project]:
            return error(403, "You do not have permission to create issues in this project.")
        with self.lock:
            ident, key = self._new_key(project)
            now = ms_of(datetime.now(UTC))
            issue = FakeIssue(
                id=ident,
                key=key,
                project=project,
                issuetype=fields["issuetype"]["name"],
                summary=fields["summary"],
                priority="Medium",
                created=now,
                updated=now,
                reporter={"accountId": "5b10a2844c20165700ede21g", "displayName": "QA Robot 质检"},
                status="Open",
                labels=list(fields.get("labels") or []),
                is_request=False,
                description=fields.get("description"),
                visible_from=self.searches + self.index_lag + 1,
            )
            self._lagging = max(self._lagging, issue.visible_from)
            for prop in body.get("properties") or []:
                issue.properties[prop["key"]] = prop["value"]
            for link in (body.get("update") or {}).get("issuelinks") or []:
                issue.links.append(link["add"])
            self.issues[key] = issue
            if self.fail_create_replies > 0:
                self.fail_create_replies -= 1
                return error(500, "Internal server error")
        url = f"{self.server_url}/rest/api/3/issue/{ident}"
        return JSONResponse({"id": str(ident), "key": key, "self": url}, status_code=201)

    async def get_issue(self, request: Request) -> Response:
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        wanted = [w for w in request.query_params.get("fields", "*all").split(",") if w]
        return JSONResponse(self._issue_json(found, wanted, request.query_params.get("expand", "")))

    async def changelog(self, request: Request) -> Response:
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        start = int(request.query_params.get("startAt", 0))
        size = min(int(request.query_params.get("maxResults", 100)), 100)
        values = [self._history_json(h) for h in found.histories]
        page = values[start : start + size]
        return JSONResponse(
            {
                "self": str(request.url),
                "maxResults": size,
                "startAt": start,
                "total": len(values),
                "isLast": start + size >= len(values),
                "values": page,
            }
        )

    async def prop(self, request: Request) -> Response:
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        name = request.path_params["prop"]
        if request.method == "PUT":
            found.properties[name] = await request.json()
            return Response(status_code=200)
        if name not in found.properties:
            return error(404, f"The property with key '{name}' does not exist.")
        return JSONResponse({"key": name, "value": found.properties[name]})

    async def link(self, request: Request) -> Response:
        body = await request.json()
        if (body.get("type") or {}).get("name") not in LINK_TYPES:
            return error(404, "No issue link type with name found.")
        keys = [(body.get(s) or {}).get("key") for s in ("inwardIssue", "outwardIssue")]
        if any(k not in self.issues for k in keys):
            return error(404, "Issue Does Not Exist")
        self.issues[keys[0]].links.append({"type": body["type"], "outwardIssue": {"key": keys[1]}})
        return Response(status_code=201)

    async def comment(self, request: Request) -> Response:
        """``GET`` (paged by startAt/maxResults, oldest first) or ``POST {"body": ADF}`` (201)."""
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        if request.method == "POST":
            body = (await request.json()).get("body")
            if not _is_adf(body):
                return error(400, body="Comment body is not valid (an Atlassian Document).")
            with self.lock:
                self.next_id += 1
                now = fmt_ms(ms_of(datetime.now(UTC)), self.zone)
                made = {
                    "id": str(self.next_id),
                    "author": {"accountId": "5b10a2844c20165700ede21g"},
                    "body": body,
                    "created": now,
                    "updated": now,
                }
                found.comments.append(made)
            return JSONResponse(made, status_code=201)
        start = int(request.query_params.get("startAt", 0))
        size = min(int(request.query_params.get("maxResults", 50)), 100)
        return JSONResponse(
            {
                "startAt": start,
                "maxResults": size,
                "total": len(found.comments),
                "comments": found.comments[start : start + size],
            }
        )

    def _transitions(self, issue: FakeIssue) -> list[dict[str, Any]]:
        out = []
        for ident, name, target in TRANSITIONS:
            if target == issue.status:
                continue
            cat, cat_id, status_id = STATUSES[target]
            out.append(
                {
                    "id": ident,
                    "name": name,
                    "to": {
                        "id": status_id,
                        "name": target,
                        "statusCategory": {"id": cat_id, "key": cat},
                    },
                    "hasScreen": False,
                    "isGlobal": True,
                }
            )
        return out

    async def transitions(self, request: Request) -> Response:
        """``GET``: the transitions available now; ``POST {"transition": {"id"}}``: 204, or 400."""
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        offered = self._transitions(found)
        if request.method == "GET":
            return JSONResponse({"expand": "transitions", "transitions": offered})
        wanted = str(((await request.json()).get("transition") or {}).get("id") or "")
        chosen = next((t for t in offered if t["id"] == wanted), None)
        if chosen is None:
            return error(400, f"Transition id '{wanted}' is not valid for this issue.")
        self.update_issue(found.key, datetime.now(UTC), chosen["to"]["name"])
        return Response(status_code=204)

    def _paged(self, request: Request, values: list[dict[str, Any]]) -> Response:
        start = int(request.query_params.get("start", 0))
        limit = int(request.query_params.get("limit", 50))
        page = values[start : start + limit]
        return JSONResponse(
            {
                "size": len(page),
                "start": start,
                "limit": limit,
                "isLastPage": start + limit >= len(values),
                "values": page,
            }
        )

    async def participants(self, request: Request) -> Response:
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        return self._paged(request, found.participants)

    async def sla(self, request: Request) -> Response:
        found = self._issue_or_404(request.path_params["key"])
        if isinstance(found, JSONResponse):
            return found
        if not found.is_request or not self.service_desk:
            return error(404, "The request could not be found or you do not have access to it.")
        return self._paged(request, self._sla_metrics(found))

    def _sla_metrics(self, issue: FakeIssue) -> list[dict[str, Any]]:
        """JSM's two usual SLAs: first response (one cycle) and resolution, which starts a
        new cycle at each reopen (a move out of a done status) and stops at each entry
        into one, so a reopened request has several completed cycles, maybe an ongoing one."""
        changes = issue.status_changes()
        first = next((ms for ms, s in changes if STATUSES[s][0] != "new"), None)
        goals = {"P1": 3_600_000, "P2": 4 * 3_600_000}
        goal_r = goals.get({"Highest": "P1", "High": "P2"}.get(issue.priority, ""), 8 * 3_600_000)
        spans: list[tuple[int, int | None]] = []
        start: int | None = issue.created
        for ms, status in changes[1:]:
            done = STATUSES[status][0] == "done"
            if done and start is not None:
                spans.append((start, ms))
                start = None
            elif not done and start is None:
                start = ms
        if start is not None:
            spans.append((start, None))
        return [
            self._metric(1, "Time to first response", [(issue.created, first)], 1_800_000),
            self._metric(2, "Time to resolution", spans, goal_r),
        ]

    def _metric(self, ident: int, name: str, spans: list[tuple[int, int | None]], goal: int) -> Any:
        def date(ms: int) -> dict[str, Any]:
            return {
                "iso8601": fmt_ms(ms, self.zone),
                "jira": fmt_ms(ms, self.zone),
                "friendly": "today",
                "epochMillis": ms,
            }

        def dur(ms: int) -> dict[str, Any]:
            return {"millis": ms, "friendly": f"{ms // 60000}m"}

        out: dict[str, Any] = {"id": str(ident), "name": name, "completedCycles": []}
        for start, stop in spans:
            if stop is None:
                elapsed = 0 if self.sla_now is None else max(self.sla_now - start, 0)
                out["ongoingCycle"] = {
                    "startTime": date(start),
                    "breachTime": date(start + goal),
                    "breached": elapsed > goal,
                    "paused": False,
                    "withinCalendarHours": True,
                    "goalDuration": dur(goal),
                    "elapsedTime": dur(elapsed),
                    "remainingTime": dur(goal - elapsed),
                }
                continue
            elapsed = stop - start
            out["completedCycles"].append(
                {
                    "startTime": date(start),
                    "stopTime": date(stop),
                    "breachTime": date(start + goal),
                    "breached": elapsed > goal,
                    "goalDuration": dur(goal),
                    "elapsedTime": dur(elapsed),
                    "remainingTime": dur(goal - elapsed),
                }
            )
        return out


def _is_adf(node: Any) -> bool:
    if not isinstance(node, dict) or node.get("type") != "doc" or node.get("version") != 1:
        return False

    def ok(n: Any) -> bool:
        if not isinstance(n, dict) or not isinstance(n.get("type"), str):
            return False
        if n["type"] == "text" and not (isinstance(n.get("text"), str) and n["text"]):
            return False
        return all(ok(c) for c in n.get("content") or [])

    return isinstance(node.get("content"), list) and all(ok(c) for c in node["content"])
