"""The ``jira_sm`` source: Jira Service Management Cloud incidents in, nonconformity tickets out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

import mappings
from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.issues import IssueReader, mapped_fields
from connectors.jira_sm.options import JiraOptions, resolve_options
from connectors.jira_sm.pull import Puller
from connectors.jira_sm.tickets import Ledger, TicketDesk
from core.connector import ConnectorContext
from core.errors import ConnectorError, FatalError
from core.records import (
    PulledBatch,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)

T = TypeVar("T")

_HINTS = {
    401: "credentials refused (401): check auth — the Atlassian account's e-mail with an API "
    "token from id.atlassian.com (not its password), on the site URL; scoped or OAuth "
    "tokens go through the gateway with cloud_id",
    403: "forbidden (403): the account lacks a permission (Browse projects, Service "
    "Management agent) or the token's scopes do not allow this call",
    404: "not found (404): check base_url / cloud_id (it must be the Jira site, "
    "https://<site>.atlassian.net, without a path)",
}


def hint(exc: ConnectorError) -> str | None:
    """What to fix for a failed call: by the transport error, else by the HTTP status."""
    text = str(exc)
    if "TLS error" in text:
        return (
            "the server's certificate is not trusted: set verify_tls to the path of the CA "
            "bundle (PEM) that issued it (e.g. a TLS-inspecting proxy's), or fix the chain"
        )
    if "cannot connect" in text:
        return "cannot reach the server: check base_url's host and port, DNS, proxy or firewall"
    if "timed out" in text:
        return "the server did not answer in time: check the network path or raise timeout"
    return _HINTS.get(exc.status) if exc.status is not None else None


class JiraSource:
    """Jira Service Management Cloud as a qloop source (pull, tickets, probe).

    Args:
        name: The source's name in the configuration.
        options: See :data:`connectors.jira_sm.options.OPTIONS_SCHEMA`.
        ctx: Mapping (the ``jira_sm`` default when empty), state directory, clock, sleep.
        transport: An ``httpx`` transport (tests).
    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        ctx: ConnectorContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.opts: JiraOptions = resolve_options(name, options)
        self.mapping = dict(ctx.mapping) if ctx.mapping else mappings.load("jira_sm")
        self.client = JiraClient(name, self.opts, ctx.sleep, transport, ctx.redis_url)
        history = str((self.mapping.get("history") or {}).get("path") or "")
        reader = IssueReader(
            self.client, self.mapping, self.opts.contact, self.opts.sla, self.opts.fetch_workers
        )
        self.puller = Puller(
            name,
            self.client,
            reader,
            self.opts,
            ctx.clock,
            mapped_fields(self.mapping, self.opts.contact),
            "changelog" if history else None,
        )
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self._ledger: Ledger | None = None
        self._state_file = ctx.state_dir / f"jira_sm-{safe}-tickets.sqlite3"
        self._sleep = ctx.sleep

    def _desk(self) -> TicketDesk:
        if self._ledger is None:
            self._ledger = Ledger(self._state_file)
        return TicketDesk(
            self.name,
            self.client,
            self.opts.ticket,
            self.mapping,
            self._ledger,
            self.opts.site_url,
            self._sleep,
        )

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Batches of incidents updated since ``cursor`` (see :mod:`connectors.jira_sm.pull`)."""
        return self.puller.pull(cursor)

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        """Create a nonconformity issue once (see :mod:`connectors.jira_sm.tickets`)."""
        return self._desk().create(ticket)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        return self._desk().comment(ref, comment)

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        return self._desk().resolve(ref, comment)

    def ticket_status(self, ref: str) -> TicketStatus:
        return self._desk().status(ref)

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`ticket_status` of many issues: one JQL ``key in`` search per 100."""
        return self._desk().statuses(refs)

    def ticket_fields(self, ref: str, names: Sequence[str]) -> dict[str, Any]:
        """Fields ``names`` of issue ``ref`` (a rich-text field as plain text)."""
        return self._desk().fields(ref, names)

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """The comments of issue ``ref`` as plain text, oldest first (complaints' root cause)."""
        return self._desk().notes(ref)

    def count_in_scope(self) -> int:
        """Jira's approximate count of the issues a first sync reads (own tickets left out)."""
        return self.puller.count_in_scope()

    def probe(self) -> list[str]:
        """Site, account and zone, JSM, the JQL with its approximate count, create permission.

        Calls endpoints Jira Cloud documents: ``/rest/api/3/serverInfo``,
        ``/rest/api/3/myself``, ``/rest/servicedeskapi/info``,
        ``/rest/api/3/search/approximate-count``, ``/rest/api/3/mypermissions``.

        Raises:
            FatalError: wrong URL (404), bad credentials (401), missing
                permission (403), TLS, rejected JQL; the message says which
                and what to fix.
        """
        server = self._step("GET /rest/api/3/serverInfo", self.client.server_info)
        me = self._step("GET /rest/api/3/myself", self.client.myself)
        lines = [
            f"API {self.opts.api_url}: signed in as {me.get('displayName') or me.get('accountId')}"
            f" ({me.get('accountType', 'atlassian')}), profile time zone {me.get('timeZone')}"
        ]
        try:
            count = self.count_in_scope()
        except FatalError as exc:
            msg = f"{self.name}: the JQL {self.opts.jql!r} is rejected: {exc}"
            raise FatalError(msg, connector=self.name, status=exc.attrs.get("status")) from None
        lines.append(
            f"JQL accepted: about {count} issues match {self.opts.jql!r} "
            "(qloop's own tickets left out)"
        )
        if self.opts.ticket is None:
            lines.append("no ticket project configured: nonconformities cannot be pushed here")
        else:
            project = self.opts.ticket.project
            perms = self._step(
                f"permissions in project {project}",
                lambda: self.client.permissions(project, ["CREATE_ISSUES", "LINK_ISSUES"]),
            )
            missing = [k for k, ok in perms.items() if not ok]
            if missing:
                msg = (
                    f"{self.name}: missing permission {', '.join(missing)} in project "
                    f"{project} (403 on create): grant it to the account or change ticket.project"
                )
                raise FatalError(msg, connector=self.name, status=403)
            lines.append(f"can create and link issues in project {project}")
        lines.append(self._service_desk_line())
        lines.append(
            f"{server.get('deploymentType') or 'Jira'} {server.get('version') or ''} at "
            f"{server.get('baseUrl') or self.opts.api_url}; SLA cycles: "
            f"{'read from JSM' if self.opts.sla else 'not read'}; "
            f"contact from {self.opts.contact}; dates as {self.opts.timezone_mode}"
        )
        return lines

    def _service_desk_line(self) -> str:
        """JSM's version; without JSM the SLA and participants cannot be read."""
        try:
            info = self.client.servicedesk_info()
        except FatalError as exc:
            if exc.attrs.get("status") != 404:
                raise self._explain(exc, "GET /rest/servicedeskapi/info") from None
            if self.opts.sla or self.opts.contact == "participants":
                msg = (
                    f"{self.name}: GET /rest/servicedeskapi/info: 404 — Jira Service Management "
                    "is not on this site, so SLA cycles and participants cannot be read: set "
                    "sla: false (and another contact), or point base_url at the JSM site"
                )
                raise FatalError(msg, connector=self.name, status=404) from None
            return "Jira Service Management: not on this site (SLA and participants not read)"
        return f"Jira Service Management {info.get('version') or '?'}"

    def _step(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ConnectorError as exc:
            raise self._explain(exc, what) from None

    def _explain(self, exc: ConnectorError, what: str) -> FatalError:
        status = exc.attrs.get("status")
        found = hint(exc)
        text = f"{self.name}: {what} failed: {exc}" + (f" — {found}" if found else "")
        return FatalError(text, connector=self.name, status=status)

    def close(self) -> None:
        self.client.close()
        if self._ledger is not None:
            self._ledger.close()
