"""The ``jira_sm`` source: Jira Service Management Cloud incidents in, nonconformity tickets out."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

import mappings
from connectors.jira_sm.client import JiraClient
from connectors.jira_sm.issues import IssueReader, mapped_fields
from connectors.jira_sm.options import JiraOptions, resolve_options
from connectors.jira_sm.pull import Puller
from connectors.jira_sm.tickets import Ledger, TicketDesk
from core.connector import ConnectorContext
from core.errors import ConnectorError, FatalError
from core.records import PulledBatch, TicketRef, TicketRequest, TicketStatus

_HINTS = {
    401: "credentials refused (401): check auth (e-mail + API token on the site URL; "
    "scoped or OAuth tokens need cloud_id)",
    403: "forbidden (403): the account lacks a permission",
    404: "not found (404): check base_url / cloud_id (it must be the Jira site)",
}


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

    def ticket_status(self, ref: str) -> TicketStatus:
        return self._desk().status(ref)

    def probe(self) -> list[str]:
        """Account and zone, JQL accepted with its approximate count, create permission.

        Raises:
            FatalError: wrong URL (404), bad credentials (401), missing
                permission (403), TLS, rejected JQL; the message says which.
        """
        try:
            me = self.client.myself()
        except FatalError as exc:
            raise self._explain(exc, "GET /rest/api/3/myself") from None
        lines = [
            f"API {self.opts.api_url}: signed in as {me.get('displayName') or me.get('accountId')}"
            f" ({me.get('accountType', 'atlassian')}), profile time zone {me.get('timeZone')}"
        ]
        try:
            count = self.client.approximate_count(self.opts.jql)
        except FatalError as exc:
            msg = f"{self.name}: the JQL {self.opts.jql!r} is rejected: {exc}"
            raise FatalError(msg, connector=self.name) from None
        lines.append(f"JQL accepted: about {count} issues match {self.opts.jql!r}")
        if self.opts.ticket is None:
            lines.append("no ticket project configured: nonconformities cannot be pushed here")
        else:
            project = self.opts.ticket.project
            try:
                perms = self.client.permissions(project, ["CREATE_ISSUES", "LINK_ISSUES"])
            except FatalError as exc:
                raise self._explain(exc, f"permissions in project {project}") from None
            missing = [k for k, ok in perms.items() if not ok]
            if missing:
                msg = (
                    f"{self.name}: missing permission {', '.join(missing)} in project "
                    f"{project} (403 on create): grant it to the account or change ticket.project"
                )
                raise FatalError(msg, connector=self.name, status=403)
            lines.append(f"can create and link issues in project {project}")
        lines.append(
            f"SLA cycles: {'read from JSM' if self.opts.sla else 'not read'}; "
            f"contact from {self.opts.contact}; dates as {self.opts.timezone_mode}"
        )
        return lines

    def _explain(self, exc: ConnectorError, what: str) -> FatalError:
        status = getattr(exc, "status", None)
        hint = _HINTS.get(status) if isinstance(status, int) else None
        text = f"{self.name}: {hint} — {exc}" if hint else str(exc)
        return FatalError(text or what, connector=self.name, status=status)

    def close(self) -> None:
        self.client.close()
        if self._ledger is not None:
            self._ledger.close()
