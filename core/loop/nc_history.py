"""A nonconformity follows the facts: updated, withdrawn, reinstated, each change kept (§10).

Every change bumps the nonconformity's ``revision`` and writes a
:class:`NonconformityEvent` (``raised``, ``updated``, ``withdrawn``,
``reinstated``) with the fields changed ``{field: [before, after]}`` and
why. Its ticket follows:

- not sent yet: the pending ticket is rewritten (updated) or cancelled
  (withdrawn);
- in the ITSM: an outbox ``ticket_comment`` says what changed and why
  (updated, reinstated while still open), or a ``ticket_resolve`` comments
  why and resolves it (withdrawn);
- a finding that comes back after its ticket was resolved gets a new ticket
  (idempotency and dedup key ``<key>#r<revision>``).

Comment and resolve items are keyed by the nonconformity's key and
revision, so a re-run queues nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.loop._bulk import chunks, insert_rows, update_by_id
from core.loop.common import StepResult, audit_row
from core.loop.outbox import outbox_row
from core.runtime import Runtime
from core.states import NcState, OutboxState
from core.store.models import (
    AuditLog,
    ComplianceRecord,
    Nonconformity,
    NonconformityEvent,
    OutboxItem,
)
from core.timeutil import parse_instant

UNSENT = (OutboxState.PENDING, OutboxState.DEAD)
"""Outbox states of an item not (yet) delivered: it can still be cancelled."""

TRACKED = ("severity", "raised_at", "deadline", "detail")
"""The fields of a nonconformity that follow its finding."""
TICKET_KINDS = ("ticket", "ticket_comment", "ticket_resolve")
_LABELS = {"severity": "severity", "raised_at": "raised at", "deadline": "deadline",
           "detail": "detail", "state": "state"}  # fmt: skip


def _value(field: str, f: dict[str, Any]) -> Any:
    return parse_instant(f[field]) if field in ("raised_at", "deadline") else f[field]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def field_changes(nc: Nonconformity, f: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [stored, current]}`` for each tracked field the finding changes."""
    out: dict[str, list[Any]] = {}
    for name in TRACKED:
        old, new = getattr(nc, name), _value(name, f)
        if old != new:
            out[name] = [_plain(old), _plain(new)]
    return out


def why_withdrawn(nc: Nonconformity, rec: ComplianceRecord) -> str:
    """Why the current facts no longer show ``nc``'s finding, in words."""
    if rec.cancelled:
        return "the incident is cancelled (or deleted) in the ITSM"
    if nc.rule == "response_breach":
        return f"the response now meets its target ({rec.response_s} s ≤ {rec.response_target_s} s)"
    if nc.rule == "resolution_breach":
        return "the resolution breach no longer stands (reopened, or resolved within target)"
    resolution = next(
        (
            r
            for r in rec.resolutions or []
            if r.get("at") and parse_instant(r["at"]) == parse_instant(nc.resolution_key)
        ),
        None,
    )
    if resolution is None:
        return "the resolution it was about no longer exists (the incident was reopened)"
    verdict = resolution.get("verdict")
    if nc.rule in ("callback_missed", "callback_late"):
        reached = resolution.get("first_reached_at")
        at = f", first reached at {reached}" if reached else ""
        return f"outcomes collected since then make the callback verdict {verdict}{at}"
    if nc.rule == "not_confirmed":
        return f"the customer's answer now confirms the resolution (callback verdict {verdict})"
    return "no answer of this resolution is below the satisfaction threshold any more"


def comment_text(nc: Nonconformity, kind: str, changes: dict[str, list[Any]], reason: str) -> str:
    """The ticket comment for one change of ``nc``."""
    head = {
        "updated": "qloop updated this nonconformity",
        "withdrawn": "qloop withdrew this nonconformity: the finding no longer holds",
        "reinstated": "qloop reinstated this nonconformity: the finding holds again",
    }[kind]
    lines = [f"{head} ({nc.rule}, revision {nc.revision})."]
    for name, (old, new) in changes.items():
        lines.append(f"{_LABELS.get(name, name)}: {old} → {new}")
    lines.append(f"Why: {reason}")
    return "\n".join(lines)


class History:
    """The nonconformities' new values, events, follow-up outbox items and audits of one
    raise batch, written together.

    The stored nonconformities are plain objects (:meth:`watch`), each kept with its
    columns as read: :meth:`write` updates the columns whose value differs from it,
    as the ORM's flush would (one ``executemany`` per set of columns).
    """

    def __init__(self, rt: Runtime, s: Session, result: StepResult) -> None:
        self.rt, self.s, self.result = rt, s, result
        self.now = rt.now()
        self.events: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.audits: list[dict[str, Any]] = []
        self.tickets: dict[int, list[OutboxItem]] = {}
        self.watched: list[tuple[Nonconformity, dict[str, Any]]] = []

    def watch(self, columns: dict[str, Any]) -> Nonconformity:
        """A stored nonconformity (``columns`` as read) as a plain object whose changes
        :meth:`write` writes."""
        nc = cast("Nonconformity", SimpleNamespace(**columns))
        self.watched.append((nc, columns))
        return nc

    def event(
        self, nc_id: int, revision: int, kind: str, changes: dict[str, Any], reason: str
    ) -> None:
        self.events.append(
            {
                "nonconformity_id": nc_id,
                "revision": revision,
                "at": self.now,
                "kind": kind,
                "changes": changes,
                "reason": reason,
            }
        )

    def load_tickets(self, nc_ids: list[int]) -> None:
        """Read the ticket outbox items of ``nc_ids`` (oldest first)."""
        for chunk in chunks(sorted(set(nc_ids))):
            for item in self.s.scalars(
                select(OutboxItem)
                .where(OutboxItem.kind.in_(TICKET_KINDS), OutboxItem.entity_id.in_(chunk))
                .order_by(OutboxItem.id)
            ):
                self.tickets.setdefault(item.entity_id, []).append(item)

    def _latest(self, nc: Nonconformity, kind: str) -> OutboxItem | None:
        found = [i for i in self.tickets.get(nc.id, []) if i.kind == kind]
        return found[-1] if found else None

    def _follow_up(self, nc: Nonconformity, kind: str, text: str) -> None:
        key = f"{nc.dedup_key}#{kind.removeprefix('ticket_')}-r{nc.revision}"
        row = outbox_row(
            key=key, kind=kind, target=nc.ticket_target, payload={"text": text}, now=self.now
        )
        self.items.append({**row, "entity_id": nc.id})
        self.result.counts[f"queued_{kind}"] += 1

    def _cancel(self, item: OutboxItem) -> bool:
        """Cancel ``item`` if it is still unsent; whether it was."""
        done = self.s.execute(
            update(OutboxItem)
            .where(
                OutboxItem.id == item.id,
                OutboxItem.state.in_(UNSENT),
            )
            .values(state=OutboxState.CANCELLED)
        )
        self.s.refresh(item)
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def updated(self, nc: Nonconformity, f: dict[str, Any], payload: dict[str, Any]) -> None:
        """Make ``nc`` say what finding ``f`` says; ``payload``: its ticket as it would be now."""
        changes = field_changes(nc, f)
        nc.evidence_ref = f.get("ref")
        if not changes:
            return
        for name in changes:
            setattr(nc, name, _value(name, f))
        nc.revision += 1
        nc.updated_at = self.now
        reason = f"re-evaluated from the current facts: {f['detail']}"
        self.event(nc.id, nc.revision, "updated", changes, reason)
        self.result.counts["updated"] += 1
        ticket = self._latest(nc, "ticket")
        if ticket is not None and ticket.state in UNSENT:
            ticket.payload = {**payload, "dedup_key": ticket.payload.get("dedup_key", nc.dedup_key)}
            return  # not in the ITSM yet: it will be created as the facts are now
        if ticket is not None and ticket.state != OutboxState.CANCELLED:
            self._follow_up(nc, "ticket_comment", comment_text(nc, "updated", changes, reason))

    def withdrawn(self, nc: Nonconformity, reason: str) -> None:
        """Withdraw ``nc``: cancel its unsent ticket, or comment and resolve it in the ITSM."""
        changes = {"state": [nc.state, "withdrawn"]}
        nc.state, nc.withdrawn_at, nc.updated_at = NcState.WITHDRAWN, self.now, self.now
        nc.revision += 1
        self.event(nc.id, nc.revision, "withdrawn", changes, reason)
        self.result.counts["withdrawn"] += 1
        ticket = self._latest(nc, "ticket")
        unsent = ticket is not None and ticket.state in UNSENT and self._cancel(ticket)
        in_itsm = ticket is not None and ticket.state != OutboxState.CANCELLED and not unsent
        if in_itsm:
            self._follow_up(nc, "ticket_resolve", comment_text(nc, "withdrawn", {}, reason))
        self.audits.append(
            audit_row(
                self.rt,
                "nonconformity.withdraw",
                "nonconformity",
                nc.id,
                key=nc.dedup_key,
                reason=reason,
                ticket=nc.ticket_ref,
                ticket_resolve_queued=in_itsm,
            )
        )

    def reinstated(self, nc: Nonconformity, f: dict[str, Any], payload: dict[str, Any]) -> None:
        """Bring withdrawn ``nc`` back; its ticket is reused while still open, else a new one."""
        changes: dict[str, Any] = {"state": ["withdrawn", "open"], **field_changes(nc, f)}
        for name in TRACKED:
            setattr(nc, name, _value(name, f))
        nc.evidence_ref = f.get("ref")
        nc.state, nc.withdrawn_at, nc.updated_at = NcState.OPEN, None, self.now
        nc.revision += 1
        reason = f"the current facts show the finding again: {f['detail']}"
        self.result.counts["reinstated"] += 1
        ticket = self._latest(nc, "ticket")
        resolve = self._latest(nc, "ticket_resolve")
        if ticket is not None and ticket.state == OutboxState.CANCELLED and nc.ticket_ref is None:
            # never sent: send it after all, as the facts are now
            ticket.payload = {**payload, "dedup_key": ticket.payload.get("dedup_key", nc.dedup_key)}
            ticket.state, ticket.attempts, ticket.next_attempt_at = OutboxState.PENDING, 0, self.now
            ticket.last_error = None
        elif resolve is None or (resolve.state in UNSENT and self._cancel(resolve)):
            # the ticket is still open in the ITSM (or about to be created): say so there
            if nc.ticket_ref is not None:
                nc.state = NcState.TICKETED
            changes["state"][1] = nc.state
            if nc.ticket_ref is not None or ticket is not None:
                text = comment_text(nc, "reinstated", changes, reason)
                self._follow_up(nc, "ticket_comment", text)
        else:  # resolved in the ITSM: a new ticket
            key = f"{nc.dedup_key}#r{nc.revision}"
            changes["ticket_ref"] = [nc.ticket_ref, None]
            nc.ticket_ref = nc.ticket_url = nc.ticket_status = nc.closed_at = None
            nc.overdue = False
            row = outbox_row(
                key=key,
                kind="ticket",
                target=nc.ticket_target,
                payload={**payload, "dedup_key": key},
                now=self.now,
            )
            self.items.append({**row, "entity_id": nc.id})
        self.event(nc.id, nc.revision, "reinstated", changes, reason)

    def write(self) -> None:
        """Write the watched nonconformities' changes, insert the batch's events, follow-up
        items and audits (the caller commits)."""
        rows = []
        for nc, before in self.watched:
            changed = {n: value for n, v in before.items() if (value := getattr(nc, n)) != v}
            if changed:
                rows.append({"id": nc.id, **changed})
        update_by_id(self.s, Nonconformity, rows)
        self.s.flush()
        insert_rows(self.s, NonconformityEvent, self.events)
        insert_rows(self.s, OutboxItem, self.items)
        insert_rows(self.s, AuditLog, self.audits)
