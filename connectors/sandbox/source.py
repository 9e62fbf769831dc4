"""The sandbox ITSM: a source that serves generated incidents as a real tool would.

It shows its incidents "as of" the connector's clock (only what has
happened by then), pages by ``updated`` with an overlap window, fails now
and then with 429/503/504 when ``failure_rate`` > 0, takes nonconformity
tickets (idempotent by dedup key) and works them like a real team. Its
state lives in ``<state_dir>/sandbox-source-<name>.sqlite3``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import mappings
from connectors.sandbox.generator import iter_incidents, view_as_of
from connectors.sandbox.remote import (
    THROTTLE_OPTIONS,
    Failure,
    RemoteState,
    TicketStep,
    resolve_options,
    unit,
)
from core.connector import ConnectorContext
from core.errors import ConfigError, FatalError, InputError, RetriableError, StateError
from core.mapping import map_incident
from core.records import (
    Category,
    PulledBatch,
    Rejected,
    TicketComment,
    TicketNote,
    TicketRef,
    TicketRequest,
    TicketStatus,
)
from core.timeutil import iso, parse_duration, parse_instant, to_utc

SOURCE_OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sandbox source options",
    "type": "object",
    "additionalProperties": False,
    "required": ["month"],
    "properties": {
        "seed": {"type": "string", "default": "qloop", "description": "generator seed"},
        "month": {
            "type": "string",
            "pattern": r"^\d{4}-(0[1-9]|1[0-2])$",
            "description": "month (YYYY-MM) whose incidents are generated",
        },
        "incidents": {
            "type": "integer",
            "minimum": 1,
            "default": 400,
            "description": "how many incidents to generate",
        },
        **THROTTLE_OPTIONS,
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10000,
            "default": 100,
            "description": "incidents per pull page",
        },
        "overlap": {"type": "string", "default": "5m", "description": "e.g. 5m, 30s, 1h"},
        "timezone": {
            "type": "string",
            "default": "Asia/Shanghai",
            "description": "zone of the generated office hours",
        },
    },
}

WHAT = "sandbox ITSM"
TICKET_CATEGORIES = {
    "Open": Category.NEW,
    "In Progress": Category.IN_PROGRESS,
    "Resolved": Category.RESOLVED,
    "Closed": Category.CLOSED,
    "Won't Do": Category.CANCELLED,
}
_DONE = (Category.RESOLVED, Category.CLOSED, Category.CANCELLED)


def ticket_plan(seed: str, ref: str) -> list[tuple[int, str]]:
    """How ticket ``ref`` moves: ``(reads needed, status)`` steps, deterministic.

    About 25% stay open for good (some never leave Open), ~5% end as
    Won't Do, the others go In Progress → Resolved (→ Closed for ~60%)
    within a few reads.
    """
    u = unit(seed, "ticket", ref)
    first = 1 + int(unit(seed, "first", ref) * 2)
    second = first + 1 + int(unit(seed, "second", ref) * 3)
    if u < 0.10:
        return [(0, "Open")]
    if u < 0.25:
        return [(0, "Open"), (first, "In Progress")]
    if u < 0.30:
        return [(0, "Open"), (first, "Won't Do")]
    steps = [(0, "Open"), (first, "In Progress"), (second, "Resolved")]
    if unit(seed, "close", ref) < 0.6:
        steps.append((second + 1 + int(unit(seed, "third", ref) * 2), "Closed"))
    return steps


def complaint_plan(seed: str, ref: str) -> list[tuple[int, str]]:
    """How a complaint's ticket moves: the team always works it through to Closed."""
    first = 1 + int(unit(seed, "first", ref) * 2)
    second = first + 1 + int(unit(seed, "second", ref) * 2)
    return [(0, "Open"), (first, "In Progress"), (second, "Resolved"), (second + 1, "Closed")]


COMPLAINT_MARK = "customer complaint"
"""Words qloop writes on a ticket that is (or became) a complaint's."""
ROOT_CAUSES = (
    ("Root cause: 变更窗口内配置下发遗漏，未执行回退检查。",
     "Rectification: 补充变更核对清单并对值班工程师复训；已与客户确认恢复。"),
    ("Root cause: 一线工程师未按 SLA 升级，工单在队列中滞留。",
     "Rectification: 增加队列超时自动升级规则，本周完成复盘。"),
    ("Root cause: 知识库方案过期，首次处理未解决问题。",
     "Rectification: 更新知识库条目并加入季度审查。"),
)  # fmt: skip
"""What the sandbox team writes on a complaint's ticket: (root cause, rectification)."""


class SandboxSource:
    """A generated ITSM behaving like a remote one (see module docstring).

    Args:
        name: the source's name in the configuration.
        options: see :data:`SOURCE_OPTIONS_SCHEMA`.
        ctx: state directory, mapping (the sandbox default when empty) and clock.
    """

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        opts = resolve_options(SOURCE_OPTIONS_SCHEMA, options, f"sources.{name}")
        try:
            self._overlap = parse_duration(opts["overlap"], allow_business_days=False).seconds
        except InputError as exc:
            msg = f"sources.{name}.overlap: {exc}"
            raise ConfigError(msg) from exc
        try:
            ZoneInfo(opts["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"sources.{name}.timezone: unknown time zone {opts['timezone']!r}"
            raise ConfigError(msg) from exc
        self.name = name
        self._opts = opts
        self._ctx = ctx
        self._mapping = dict(ctx.mapping) if ctx.mapping else mappings.load("sandbox")
        self._dataset = f"{opts['seed']}|{opts['month']}|{opts['incidents']}|{opts['timezone']}"
        self._state = RemoteState(ctx.state_dir, "source", name)

    def _now(self) -> datetime:
        return to_utc(self._ctx.clock())

    def _call(self) -> None:
        failure = self._state.roll(
            self._opts["seed"], self._opts["failure_rate"], WHAT, self._opts["retry_after"]
        )
        if failure is not None:
            raise failure.error

    def _dataset_span(self) -> tuple[int, int]:
        span = self._state.dataset_range(self._dataset)
        if span is None:
            o = self._opts
            raws = iter_incidents(o["seed"], o["month"], o["incidents"], o["timezone"])
            self._state.store_dataset(self._dataset, raws)
            # the month's drafts are freed by now, but small objects parked on the
            # interpreter's free lists keep the memory arenas they sit in mapped (~50 MB
            # at 60k incidents, measured): a full collection empties the free lists and
            # the arenas go back to the system, once per generated month
            gc.collect()
            span = self._state.dataset_range(self._dataset)
        if span is None:
            msg = f"{WHAT}: dataset {self._dataset!r} was not stored"
            raise StateError(msg)
        return span

    def probe(self) -> list[str]:
        """What ``qloop sources test`` shows: the generated dataset and how much is visible now."""
        self._call()
        lo, hi = self._dataset_span()
        o = self._opts
        return [
            f"sandbox ITSM, seed {o['seed']!r}, month {o['month']}, zone {o['timezone']}",
            f"{hi - lo + 1 if hi >= lo else 0} generated incidents; "
            f"failure rate {o['failure_rate']:.0%} (retriable, Retry-After {o['retry_after']} s)",
        ]

    def count_in_scope(self) -> int:
        """How many incidents a first sync reads: those that exist as of the clock.

        The sandbox keeps its nonconformity tickets apart from its incidents,
        so a pull never returns one of qloop's own tickets.
        """
        now = self._now()
        rows, _ = self._state.changed(self._dataset_span(), None, int(now.timestamp()))
        seen = 0
        for start in range(0, len(rows), 500):
            raws = self._state.incidents(rows[start : start + 500])
            seen += sum(1 for raw in raws.values() if view_as_of(raw, now) is not None)
        return seen

    def pull(self, cursor: str | None) -> Iterator[PulledBatch]:
        """Yield the incidents updated since ``cursor`` − overlap, as of the clock.

        Ordered by (updated, id), ``page_size`` per batch; each batch's
        cursor is the greatest ``updated`` returned so far (ISO, UTC). Each
        page is one remote call that may fail with :class:`RetriableError`.
        """
        now = self._now()
        previous = None if cursor is None else parse_instant(cursor)
        since = None if previous is None else previous - timedelta(seconds=self._overlap)
        self._call()
        span = self._dataset_span()
        low = None if since is None else int(since.timestamp())
        rows, stamps = self._state.changed(span, low, int(now.timestamp()))
        size = self._opts["page_size"]
        high = previous
        for start in range(0, len(rows), size):
            if start:
                self._call()
            page_rows, page_stamps = rows[start : start + size], stamps[start : start + size]
            raws = self._state.incidents(page_rows)
            records = []
            rejected = []
            for row, updated in zip(page_rows, page_stamps, strict=True):
                view = view_as_of(raws[row], now)
                if view is None:
                    continue
                try:
                    records.append(map_incident(view, self._mapping))
                except InputError as exc:  # set aside by the core; the page goes on
                    when = datetime.fromtimestamp(updated, UTC)
                    rejected.append(Rejected.of(str(view.get("key", row)), exc, when))
            last = datetime.fromtimestamp(page_stamps[-1], UTC)
            high = last if high is None else max(high, last)
            yield PulledBatch(records, iso(high), rejected)

    def create_ticket(self, ticket: TicketRequest) -> TicketRef:
        """Create a ticket, or return the one already holding ``ticket.dedup_key``."""
        answer = self.create_tickets([ticket])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create_tickets(self, tickets: Sequence[TicketRequest]) -> list[TicketRef | Exception]:
        """:meth:`create_ticket` for each ticket, stored in one write transaction.

        Each ticket is its own call for the simulated failures: a failed one
        gets its error as its answer (after it was stored, for a lost answer).
        """
        answers: list[TicketRef | Exception | None] = []
        failures: dict[int, Failure] = {}
        stored: list[tuple[int, TicketRequest]] = []
        for n, ticket in enumerate(tickets):
            failure = self._state.roll(
                self._opts["seed"], self._opts["failure_rate"], WHAT, self._opts["retry_after"]
            )
            if failure is not None and not failure.after_write:
                answers.append(failure.error)
                continue
            if failure is not None:
                failures[n] = failure
            answers.append(None)
            stored.append((n, ticket))
        seqs = self._state.create_tickets(
            [(t.dedup_key, _ticket_payload(t)) for _, t in stored], iso(self._now()) or ""
        )
        for (n, _), seq in zip(stored, seqs, strict=True):
            failure = failures.get(n)
            answers[n] = (
                failure.error
                if failure is not None
                else TicketRef(ref=f"SBX-QA-{seq}", url=f"sandbox://itsm/{self.name}/SBX-QA-{seq}")
            )
        return [a for a in answers if a is not None]

    def ticket_status(self, ref: str) -> TicketStatus:
        """Read a ticket; each read moves it along its deterministic plan.

        Raises:
            FatalError: no such ticket (404).
        """
        answer = self.ticket_statuses([ref])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def ticket_statuses(self, refs: Sequence[str]) -> list[TicketStatus | Exception]:
        """:meth:`ticket_status` for each ref, read (and moved) in one write transaction."""
        now = iso(self._now())
        answers: list[TicketStatus | Exception | None] = []
        found: list[tuple[int, str, int]] = []
        for n, ref in enumerate(refs):
            try:
                self._call()
            except RetriableError as exc:
                answers.append(exc)
                continue
            answers.append(None)
            prefix, _, number = ref.rpartition("-")
            if prefix == "SBX-QA" and number.isdigit():
                found.append((n, ref, int(number)))
            else:
                answers[n] = _not_found(ref)
        marked = self._state.marked_tickets(
            [seq for _, _, seq in found], "complaint", COMPLAINT_MARK
        )
        reads: list[tuple[int, TicketStep]] = []
        wanted: list[tuple[int, str]] = []
        complaints: set[int] = set()
        for n, ref, seq in found:
            complaint = seq in marked
            reads.append((seq, self._ticket_step(ref, now, complaint)))
            wanted.append((n, ref))
            if complaint:
                complaints.add(n)
        moved = self._state.advance_tickets(reads)
        team: list[tuple[int, str, str, str]] = []
        for (n, ref), result in zip(wanted, moved, strict=True):
            if result is None:
                answers[n] = _not_found(ref)
                continue
            status, closed_at = result
            if n in complaints and status != "Open":
                team.extend(self._team_writes(self._seq(ref), ref, status))
            answers[n] = TicketStatus(
                ref=ref,
                status=status,
                category=TICKET_CATEGORIES[status],
                closed_at=None if closed_at is None else parse_instant(closed_at),
            )
        self._state.comment_tickets(team)  # one write transaction for the batch's tickets
        return [a for a in answers if a is not None]

    def _ticket_step(self, ref: str, now: str | None, complaint: bool = False) -> TicketStep:
        """How one read moves ticket ``ref`` along its plan (a complaint's own plan)."""
        seed = self._opts["seed"]
        plan = complaint_plan(seed, ref) if complaint else ticket_plan(seed, ref)

        def step(reads: int, status: str, closed_at: str | None) -> tuple[str, str | None]:
            new = [s for need, s in plan if need <= reads][-1]
            if closed_at is not None and TICKET_CATEGORIES[new] not in _DONE:
                return status, closed_at  # resolved (by qloop) before its plan got there
            done = TICKET_CATEGORIES[new] in _DONE
            return new, closed_at or (now if done else None)

        return step

    def _seq(self, ref: str) -> int:
        prefix, _, number = ref.rpartition("-")
        if prefix == "SBX-QA" and number.isdigit():
            return int(number)
        msg = f"{WHAT}: 404 ticket {ref!r} not found"
        raise FatalError(msg, ref=ref)

    def comment_ticket(self, ref: str, comment: TicketComment) -> str:
        """Comment ticket ``ref`` once per ``comment.key``; returns the comment's id.

        Raises:
            FatalError: no such ticket (404).
        """
        self._call()
        seq = self._seq(ref)
        found = self._state.comment_ticket(
            seq, comment.marker, comment.stamped(), iso(self._now()) or ""
        )
        if found is None:
            msg = f"{WHAT}: 404 ticket {ref!r} not found"
            raise FatalError(msg, ref=ref)
        return f"{ref}#c{found}"

    def resolve_ticket(self, ref: str, comment: TicketComment) -> str:
        """Comment ticket ``ref`` and resolve it (a done ticket stays as it is); its status."""
        self.comment_ticket(ref, comment)
        status = self._state.finish_ticket(self._seq(ref), "Resolved", iso(self._now()) or "")
        if status is None:
            msg = f"{WHAT}: 404 ticket {ref!r} not found"
            raise FatalError(msg, ref=ref)
        return status

    def _team_writes(self, seq: int, ref: str, status: str) -> list[tuple[int, str, str, str]]:
        """What the team writes on a complaint's ticket (``(seq, marker, body, now)`` comments,
        each once per marker): the root cause once working, the rectification once resolved."""
        cause, fix = ROOT_CAUSES[int(unit(self._opts["seed"], "cause", ref) * len(ROOT_CAUSES))]
        now = iso(self._now()) or ""
        writes = [(seq, "sandbox:root-cause", cause, now)]
        if TICKET_CATEGORIES[status] in _DONE:
            writes.append((seq, "sandbox:rectification", fix, now))
        return writes

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        """The comments of ticket ``ref`` with when they were written, oldest first."""
        self._call()
        return [
            TicketNote(text=body, at=parse_instant(at) if at else None)
            for body, at in self._state.ticket_notes(self._seq(ref))
        ]

    def ticket_notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        """:meth:`ticket_notes` for each ref, read with one query per 500 tickets.

        Each ref is its own call for the simulated failures (its error as its answer); a ref
        that names no ticket of the sandbox gets the 404 the single call raises.
        """
        answers: list[list[TicketNote] | Exception] = []
        seqs: list[int | None] = []
        for ref in refs:
            try:
                self._call()
                seqs.append(self._seq(ref))
                answers.append([])
            except (RetriableError, FatalError) as exc:
                seqs.append(None)
                answers.append(exc)
        notes = self._state.tickets_notes([seq for seq in seqs if seq is not None])
        for n, seq in enumerate(seqs):
            if seq is not None:
                answers[n] = [
                    TicketNote(text=body, at=parse_instant(at) if at else None)
                    for body, at in notes.get(seq, ())
                ]
        return answers

    def ticket_comments(self, ref: str) -> list[str]:
        """The comments written on ticket ``ref`` (for tests and the demo)."""
        return self._state.ticket_comments(self._seq(ref))

    def close(self) -> None:
        """Close the state file."""
        self._state.close()


def _ticket_payload(ticket: TicketRequest) -> dict[str, Any]:
    """What the sandbox ITSM keeps of a ticket."""
    return {
        "title": ticket.title,
        "description": ticket.description,
        "labels": list(ticket.labels),
        "incident": {"id": ticket.incident_external_id, "key": ticket.incident_key},
        "rule": ticket.rule,
        "severity": ticket.severity,
        "raised_at": iso(ticket.raised_at),
        "deadline": iso(ticket.deadline),
    }


def _not_found(ref: str) -> FatalError:
    return FatalError(f"{WHAT}: 404 ticket {ref!r} not found", ref=ref)
