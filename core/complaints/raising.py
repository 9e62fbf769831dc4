"""raise complaints: a major nonconformity, or an incident or answer flagged by its mapping (R5).

One complaint per incident (key ``complaint:<source>:<external id>``):
the first reason found makes it, later ones are not counted twice. Each new
complaint is written with its ``received`` event and, in the same
transaction, what takes it to the responsible team at once:

- a complaint from a nonconformity uses the nonconformity's ticket: a
  ``ticket_comment`` tells the team it is a complaint and how to record
  root cause and rectification;
- any other gets a ticket of its own (outbox kind ``complaint_ticket``,
  idempotency and dedup key the complaint's key) in the source the
  policy pushes to.

The notification (e-mail or signed webhook) is queued once the ticket
exists (:mod:`core.complaints.following`), so it can name it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.complaints.deadline import business_deadline
from core.complaints.match import flag_matchers, flagged_by, flagged_by_values, json_paths
from core.conf.model import ComplaintsConfig
from core.loop._bulk import insert_returning_ids, insert_rows
from core.loop.common import StepResult, audit_row, connector_state
from core.loop.nonconformities import ticket_payload
from core.loop.outbox import outbox_row
from core.runtime import Runtime
from core.states import ComplaintState, NcState
from core.store.models import (
    AuditLog,
    Complaint,
    ComplaintEvent,
    Incident,
    Match,
    Nonconformity,
    OutboxItem,
    Response,
)
from core.timeutil import iso

BATCH = 200
TICKET = "complaint_ticket"
"""Outbox kind of a complaint's own ticket (sent by the push step, like a nonconformity's)."""
SCAN_OVERLAP = timedelta(hours=1)
"""Incidents changed this long before the last scan are looked at again (late commits)."""


def complaint_key(inc: Incident) -> str:
    return f"complaint:{inc.source}:{inc.external_id}"


def instructions(rt: Runtime, target: str) -> str:
    """How the team records root cause and rectification on the ticket (the mapping's words)."""
    block = rt.source_mapping(target).get("complaint") or {}
    parts = []
    for what, label in (("root_cause", "the root cause"), ("rectification", "the rectification")):
        spec = block.get(what) or {}
        if spec.get("comment_prefix"):
            parts.append(f'{label} in a comment starting "{spec["comment_prefix"]}"')
        elif spec.get("comment_pattern"):
            parts.append(f"{label} in a comment matching /{spec['comment_pattern']}/")
        else:
            parts.append(f"{label} on this ticket")
    return "Please record " + " and ".join(parts) + ", then close the ticket."


class _New:
    """The complaints of one batch and what goes with them, written together."""

    def __init__(self, rt: Runtime, conf: ComplaintsConfig, result: StepResult) -> None:
        self.rt, self.conf, self.result = rt, conf, result
        self.now = rt.now()
        self.rows: list[dict[str, Any]] = []
        self.items: list[tuple[str, dict[str, Any], int | None]] = []
        """(complaint key, outbox row, entity id when not the complaint's)."""
        self.audits: list[dict[str, Any]] = []
        self.keys: set[str] = set()

    def add(
        self,
        inc: Incident,
        origin: str,
        detail: str,
        received_at: datetime,
        nc: Nonconformity | None = None,
    ) -> None:
        key = complaint_key(inc)
        if key in self.keys:
            return
        self.keys.add(key)
        rt = self.rt
        policy_name = rt.config.sources[inc.source].policy
        policy = rt.policy(policy_name)
        deadline = business_deadline(policy.calendar, received_at, self.conf.deadline)
        if nc is not None:
            target = nc.ticket_target
        else:
            push_to = rt.config.policies[policy_name].push_to
            target = inc.source if push_to == "source" else push_to
        self.rows.append(
            {
                "key": key,
                "incident_id": inc.id,
                "nonconformity_id": nc.id if nc is not None else None,
                "origin": origin,
                "origins": [{"origin": origin, "detail": detail}],
                "detail": detail,
                "policy": policy_name,
                "state": ComplaintState.RECEIVED,
                "received_at": received_at,
                "deadline": deadline,
                "ticket_target": target,
                "follow_up_outcome": {},
                "revision": 1,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )
        how = instructions(rt, target)
        if nc is not None:
            text = (
                f"qloop: this nonconformity is a customer complaint ({detail}). {how} "
                f"Deadline: {deadline.astimezone(policy.calendar.tz).isoformat()}."
            )
            row = outbox_row(
                key=f"{key}#complaint",
                kind="ticket_comment",
                target=target,
                payload={"text": text},
                now=self.now,
            )
            self.items.append((key, row, nc.id))
        else:
            finding = {
                "rule": "complaint",
                "severity": "major",
                "detail": f"{detail}. {how}",
                "raised_at": iso(received_at),
                "deadline": iso(deadline),
            }
            payload = ticket_payload(rt, inc, target, finding, key)
            payload["labels"] = [*payload["labels"], "complaint"]
            self.items.append(
                (
                    key,
                    outbox_row(key=key, kind=TICKET, target=target, payload=payload, now=self.now),
                    None,
                )
            )
        self.audits.append(
            audit_row(rt, "complaint.received", "incident", inc.id, key=key, origin=origin)
        )
        self.result.counts[f"received_{origin}"] += 1

    def write(self, s: Session) -> None:
        ids = insert_returning_ids(s, Complaint, self.rows, "key")
        insert_rows(
            s,
            ComplaintEvent,
            [
                {
                    "complaint_id": ids[row["key"]],
                    "revision": 1,
                    "at": self.now,
                    "kind": "received",
                    "changes": {"state": [None, ComplaintState.RECEIVED.value]},
                    "reason": row["detail"],
                }
                for row in self.rows
            ],
        )
        insert_rows(
            s,
            OutboxItem,
            [
                {**row, "entity_id": ids[key] if entity is None else entity}
                for key, row, entity in self.items
            ],
        )
        insert_rows(s, AuditLog, self.audits)


def _no_complaint(incident_id: Any) -> Any:
    return ~exists().where(Complaint.incident_id == incident_id)


def _incidents(s: Session, ids: list[int]) -> list[Incident]:
    """The incidents ``ids`` (the flagged ones of a batch), in id order."""
    if not ids:
        return []
    return list(s.scalars(select(Incident).where(Incident.id.in_(ids)).order_by(Incident.id)))


def from_nonconformities(rt: Runtime, conf: ComplaintsConfig, result: StepResult) -> None:
    """A complaint for each incident with a nonconformity of a complaint severity.

    Keyset on the nonconformity's id: SQLite walks the primary key from the
    last batch on (``SEARCH … USING INTEGER PRIMARY KEY (rowid>?)``) rather
    than from the first row each time, so one run is linear in the month.
    """
    last_id = 0
    while True:
        with rt.db.session() as s:
            rows = s.execute(
                select(Nonconformity, Incident)
                .join(Incident, Incident.id == Nonconformity.incident_id)
                .where(
                    Nonconformity.id > last_id,
                    Nonconformity.severity.in_(conf.severities),
                    Nonconformity.state != NcState.WITHDRAWN,
                    _no_complaint(Nonconformity.incident_id),
                )
                .order_by(Nonconformity.id)
                .limit(BATCH)
            ).all()
            if not rows:
                return
            last_id = rows[-1][0].id
            new = _New(rt, conf, result)
            for nc, inc in rows:
                detail = f"{nc.severity} nonconformity {nc.rule}: {nc.detail}"
                new.add(inc, "nonconformity", detail, nc.raised_at, nc)
            new.write(s)


def from_sources(rt: Runtime, conf: ComplaintsConfig, result: StepResult) -> None:
    """A complaint for each incident its source's mapping flags (``complaint.flag``)."""
    for source in rt.source_names():
        matchers = flag_matchers(rt.source_mapping(source))
        if not matchers:
            continue
        # the database reads the flagged fields out of each raw record (JSON_EXTRACT, #>)
        # rather than handing over the whole record to decode; the raw record only when a
        # field names a list index
        paths = json_paths(matchers)
        fields = [Incident.raw] if paths is None else [Incident.raw[p] for p in paths]
        state_name = f"complaints:{source}"
        with rt.db.session() as s:
            cursor = connector_state(s, state_name).cursor
        since = datetime.fromisoformat(cursor) - SCAN_OVERLAP if cursor else None
        high: datetime | None = datetime.fromisoformat(cursor) if cursor else None
        last_id = 0
        while True:
            with rt.db.session() as s:
                # only what the flag check needs; ``source || ''`` keeps SQLite on the
                # primary key range (rowid>?) instead of the source index and a sort
                # of the whole month per batch
                query = (
                    select(Incident.id, Incident.changed_at, *fields)
                    .where(
                        Incident.id > last_id,
                        (Incident.source + "") == source,
                        _no_complaint(Incident.id),
                    )
                    .order_by(Incident.id)
                    .limit(BATCH)
                )
                if since is not None:
                    query = query.where(Incident.changed_at >= since)
                batch = s.execute(query).all()
                if not batch:
                    break
                last_id = batch[-1].id
                flagged: dict[int, str] = {}
                for inc_id, changed_at, *values in batch:
                    high = changed_at if high is None else max(high, changed_at)
                    why = (
                        flagged_by(values[0], matchers)
                        if paths is None
                        else flagged_by_values(values, matchers)
                    )
                    if why is not None:
                        flagged[inc_id] = why
                new = _New(rt, conf, result)
                for inc in _incidents(s, list(flagged)):
                    detail = f"flagged by {source}: {flagged[inc.id]}"
                    new.add(inc, "source", detail, inc.created_at)
                new.write(s)
        if high is not None:
            with rt.db.session() as s:
                connector_state(s, state_name).cursor = high.isoformat()


def from_answers(rt: Runtime, conf: ComplaintsConfig, result: StepResult) -> None:
    """A complaint for each matched answer its channel's mapping flags (``complaint.flag``)."""
    for channel in rt.channel_names():
        matchers = flag_matchers(rt.channel_mapping(channel))
        if not matchers:
            continue
        state_name = f"complaints:channel:{channel}"
        with rt.db.session() as s:
            cursor = connector_state(s, state_name).cursor
        last = int(cursor) if cursor else 0
        while True:
            with rt.db.session() as s:
                rows = s.execute(
                    select(Match.id, Match.incident_id, Response.raw, Response.occurred_at)
                    .join(Response, Response.id == Match.response_id)
                    .join(Incident, Incident.id == Match.incident_id)
                    .where(Match.id > last, Match.status == "matched", Response.channel == channel)
                    .order_by(Match.id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    break
                last = rows[-1][0]
                flagged = [
                    (inc_id, why, occurred_at)
                    for _, inc_id, raw, occurred_at in rows
                    if (why := flagged_by(raw, matchers)) is not None
                ]
                wanted = {inc_id for inc_id, _, _ in flagged}
                known = (
                    set(
                        s.scalars(
                            select(Complaint.incident_id).where(Complaint.incident_id.in_(wanted))
                        )
                    )
                    if wanted
                    else set()
                )
                incidents = {inc.id: inc for inc in _incidents(s, list(wanted - known))}
                new = _New(rt, conf, result)
                for inc_id, why, occurred_at in flagged:
                    if inc_id in incidents:
                        detail = f"flagged by channel {channel}: {why}"
                        new.add(incidents[inc_id], "channel", detail, occurred_at)
                new.write(s)
                connector_state(s, state_name).cursor = str(last)


def raise_complaints(rt: Runtime) -> StepResult:
    """Find new complaints and send them to the responsible team (their tickets)."""
    result = StepResult("complaints")
    conf = rt.config.complaints
    if conf is None:
        return result
    from_nonconformities(rt, conf, result)
    from_sources(rt, conf, result)
    from_answers(rt, conf, result)
    return result
