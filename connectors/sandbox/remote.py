"""The sandbox's fake remote systems: their persistent state and how they fail.

Each sandbox connector keeps what "the remote system" holds in its own
SQLite file, ``<state_dir>/sandbox-<kind>-<name>.sqlite3`` (WAL mode), so a
second process (a worker, a re-run) sees what the first one stored: the
ITSM's incidents and the tickets created in it, the channel's accepted
messages and the outcomes it will report, each with increasing sequence
numbers for cursors. Writes run in ``BEGIN IMMEDIATE`` transactions, so
unique keys (ticket dedup keys, message idempotency keys) hold across
processes.

Failures are deterministic: every remote call is counted in the file, and
call *n* fails when a hash of (seed, n) says so — never two calls in a
row, so a retry always gets through.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sqlite3
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from core.errors import ConfigError, Problem, RetriableError

_TEXT = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(value, ensure_ascii=False)`` without building an encoder per call (same text)."""

STORE_CHUNK = 2000
"""Generated incidents written per statement when a dataset is stored."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, ext_id TEXT NOT NULL, raw TEXT NOT NULL,
    UNIQUE (dataset, ext_id));
CREATE TABLE IF NOT EXISTS events (
    incident INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (incident, ts)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS tickets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL, created_at TEXT NOT NULL, reads INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL, closed_at TEXT);
CREATE TABLE IF NOT EXISTS ticket_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ticket INTEGER NOT NULL, marker TEXT NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (ticket, marker));
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL UNIQUE,
    provider_ref TEXT UNIQUE, kind TEXT NOT NULL, payload TEXT NOT NULL,
    accepted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, message INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE, occurred_ts INTEGER NOT NULL, payload TEXT NOT NULL,
    release_seq INTEGER UNIQUE);
CREATE INDEX IF NOT EXISTS outcomes_pending ON outcomes (occurred_ts, id)
    WHERE release_seq IS NULL;
CREATE TABLE IF NOT EXISTS campaign_participants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, survey INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE, token TEXT NOT NULL, invited_ts INTEGER NOT NULL,
    plan TEXT NOT NULL, reminded TEXT NOT NULL DEFAULT '[]');
"""

OutcomePlan = list[tuple[str, int, dict[str, Any] | str]]
"""Outcomes to store with a message: (event id, occurred at epoch seconds, payload); a
payload already encoded (its JSON text as ``json.dumps(…, ensure_ascii=False)`` writes
it) is stored as it is."""
TicketStep = Callable[[int, str, str | None], tuple[str, str | None]]
"""How one read moves a ticket: (reads so far, status, closed at) → (status, closed at)."""


@dataclass(frozen=True)
class StoredMessage:
    """A message for :meth:`RemoteState.store_messages`; ``plan(seq, ref)`` gives its outcomes."""

    idempotency_key: str
    kind: str
    payload: dict[str, Any]
    plan: Callable[[int, str], OutcomePlan]


THROTTLE_OPTIONS: dict[str, Any] = {
    "failure_rate": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0,
        "description": "share of calls that fail (429 or 5xx), to exercise retries",
    },
    "retry_after": {
        "type": "number",
        "minimum": 0,
        "default": 1.0,
        "description": "seconds a throttled (429) call is told to wait",
    },
}
"""The options of the sandbox's simulated failures, shared by its source and channel."""


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (stable across processes)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def resolve_options(
    schema: Mapping[str, Any], options: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Validate ``options`` against a JSON Schema and fill in the schema's defaults.

    Raises:
        ConfigError: listing every problem, each at ``<where>.<key>``.
    """
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(options)), key=lambda e: list(map(str, e.path)))
    if errors:
        problems = [
            Problem("config", None, ".".join([where, *map(str, e.path)]), e.message) for e in errors
        ]
        msg = f"invalid options for {where}"
        raise ConfigError(msg, problems)
    resolved = dict(options)
    for key, prop in schema.get("properties", {}).items():
        if key not in resolved and "default" in prop:
            resolved[key] = copy.deepcopy(prop["default"])
    return resolved


@dataclass(frozen=True)
class Failure:
    """A simulated failure; ``after_write`` when the remote did the work but the answer was lost."""

    error: RetriableError
    after_write: bool


class RemoteState:
    """One fake remote system's persistent state, in a SQLite file shared by processes."""

    def __init__(self, state_dir: Path, kind: str, name: str) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.path = state_dir / f"sandbox-{kind}-{safe}.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: one writer at a time across processes)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one query outside any write transaction and return its rows."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- failures -------------------------------------------------------------

    def roll(self, seed: str, rate: float, what: str, retry_after: float) -> Failure | None:
        """Count one remote call and decide whether it fails (at ``rate`` overall).

        A call right after a failed one always succeeds; to still fail
        ``rate`` of all calls, a call after a success fails with
        probability ``rate / (1 - rate)`` (so rates above 0.5 behave as 0.5).
        """
        if rate <= 0:
            return None
        with self.write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'calls'").fetchone()
            calls, last_failed = json.loads(row[0]) if row else (0, False)
            calls += 1
            p = 1.0 if rate >= 0.5 else rate / (1 - rate)
            fails = not last_failed and unit(seed, "call", calls) < p
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('calls', ?)",
                (json.dumps([calls, fails]),),
            )
        if not fails:
            return None
        kind = unit(seed, "failure", calls)
        if kind < 0.4:
            error = RetriableError(f"{what}: 503 Service Unavailable", retry_after=0.0)
        elif kind < 0.75:
            error = RetriableError(f"{what}: 429 Too Many Requests", retry_after=retry_after)
        else:
            error = RetriableError(f"{what}: 504 Gateway Timeout", retry_after=None)
        return Failure(error, after_write=kind >= 0.75)

    # -- ITSM -----------------------------------------------------------------

    def dataset_range(self, dataset: str) -> tuple[int, int] | None:
        """Row ids ``(first, last)`` of a stored dataset, None when not stored yet."""
        rows = self.read("SELECT value FROM meta WHERE key = ?", (f"dataset:{dataset}",))
        if not rows:
            return None
        first, last = json.loads(rows[0][0])
        return int(first), int(last)

    def store_dataset(self, dataset: str, records: Iterable[dict[str, Any]]) -> None:
        """Store generated incidents once (a concurrent second store is a no-op).

        ``records`` is read as a stream and written ``STORE_CHUNK`` at a time,
        in one transaction: a month of any size costs one chunk of memory.
        """
        with self.write() as db:
            if db.execute("SELECT 1 FROM meta WHERE key = ?", (f"dataset:{dataset}",)).fetchone():
                return
            start = db.execute("SELECT COALESCE(MAX(id), 0) FROM incidents").fetchone()[0] + 1
            stored = 0
            it = iter(records)
            while chunk := list(islice(it, STORE_CHUNK)):
                rows: list[tuple[int, str, str, str]] = []
                events: list[tuple[int, int]] = []
                for n, raw in enumerate(chunk, start + stored):
                    rows.append((n, dataset, raw["id"], json.dumps(raw, ensure_ascii=False)))
                    events.extend(
                        (n, int(datetime.fromisoformat(e["at"]).timestamp()))
                        for e in raw["changelog"]
                    )
                db.executemany("INSERT INTO incidents VALUES (?, ?, ?, ?)", rows)
                db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?)", events)
                stored += len(rows)
            span = json.dumps([start, start + stored - 1])
            db.execute("INSERT INTO meta VALUES (?, ?)", (f"dataset:{dataset}", span))

    def changed(
        self, span: tuple[int, int], since: int | None, now: int
    ) -> tuple[array[int], array[int]]:
        """Row ids and ``updated`` as of now of the incidents with a history entry in [since, now].

        Ordered by (updated, row id); row ids follow the incidents' ids. Two
        arrays of 8-byte integers, read row by row: a month of 100k incidents
        costs 1.6 MB, not a list of 100k tuples (~12 MB, twice while built).
        """
        low = -(2**62) if since is None else since
        rows, stamps = array("q"), array("q")
        with self._lock:
            for i, ts in self._db.execute(
                "SELECT incident, MAX(ts) AS updated FROM events "
                "WHERE ts <= ? AND incident BETWEEN ? AND ? AND incident IN "
                "(SELECT incident FROM events WHERE ts >= ? AND ts <= ?) "
                "GROUP BY incident ORDER BY updated, incident",
                (now, span[0], span[1], low, now),
            ):
                rows.append(int(i))
                stamps.append(int(ts))
        return rows, stamps

    def incidents(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Raw incidents by row id."""
        marks = ",".join("?" * len(ids))
        rows = self.read(f"SELECT id, raw FROM incidents WHERE id IN ({marks})", tuple(ids))
        return {int(i): json.loads(raw) for i, raw in rows}

    def create_ticket(self, dedup_key: str, payload: dict[str, Any], now: str) -> int:
        """Store a ticket unless its dedup key exists; its sequence number either way."""
        return self.create_tickets([(dedup_key, payload)], now)[0]

    def create_tickets(self, tickets: Sequence[tuple[str, dict[str, Any]]], now: str) -> list[int]:
        """:meth:`create_ticket` for each ``(dedup key, payload)``, in one write transaction.

        Known dedup keys are read with one query per 500; the new tickets are
        inserted with one ``executemany`` (numbered in order) and read back
        by key. A dedup key twice in ``tickets`` makes one ticket.
        """
        if not tickets:
            return []
        with self.write() as db:
            seqs = _by_key(db, "tickets", "seq", [key for key, _ in tickets], "dedup_key")
            new: dict[str, dict[str, Any]] = {}
            for dedup_key, payload in tickets:
                if dedup_key not in seqs:
                    new.setdefault(dedup_key, payload)
            db.executemany(
                "INSERT INTO tickets (dedup_key, payload, created_at, status) "
                "VALUES (?, ?, ?, 'Open')",
                [(k, json.dumps(p, ensure_ascii=False), now) for k, p in new.items()],
            )
            seqs.update(_by_key(db, "tickets", "seq", list(new), "dedup_key"))
        return [int(seqs[key]) for key, _ in tickets]

    def advance_ticket(self, seq: int, step: TicketStep) -> tuple[str, str | None] | None:
        """Count one read of ticket ``seq`` and let ``step(reads, status, closed_at)`` move it."""
        return self.advance_tickets([(seq, step)])[0]

    def advance_tickets(
        self, reads: Sequence[tuple[int, TicketStep]]
    ) -> list[tuple[str, str | None] | None]:
        """:meth:`advance_ticket` for each ``(seq, step)``, in one write transaction."""
        moved: list[tuple[str, str | None] | None] = []
        updates: list[tuple[int, str, str | None, int]] = []
        if not reads:
            return moved
        with self.write() as db:
            rows: dict[int, tuple[int, str, str | None]] = {}
            wanted = sorted({seq for seq, _ in reads})
            for start in range(0, len(wanted), 500):
                chunk = tuple(wanted[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for seq, count, status, closed_at in db.execute(
                    f"SELECT seq, reads, status, closed_at FROM tickets WHERE seq IN ({marks})",
                    chunk,
                ):
                    rows[seq] = (count, status, closed_at)
            for seq, step in reads:  # each sees the ticket as it was before this batch
                row = rows.get(seq)
                if row is None:
                    moved.append(None)
                    continue
                count = row[0] + 1
                status, closed_at = step(count, row[1], row[2])
                updates.append((count, status, closed_at, seq))
                moved.append((status, closed_at))
            db.executemany(
                "UPDATE tickets SET reads = ?, status = ?, closed_at = ? WHERE seq = ?", updates
            )
        return moved

    def comment_ticket(self, seq: int, marker: str, body: str, now: str) -> int | None:
        """Comment ticket ``seq`` unless a comment carries ``marker``; its id (None: no ticket)."""
        return self.comment_tickets([(seq, marker, body, now)])[0]

    def comment_tickets(self, comments: Sequence[tuple[int, str, str, str]]) -> list[int | None]:
        """:meth:`comment_ticket` for each ``(seq, marker, body, now)``, in one transaction.

        The tickets and the markers they already carry are read with one query each per
        500 tickets; only a new comment is inserted (one statement each: its id is the
        answer). A marker twice in ``comments`` makes one comment.
        """
        ids: list[int | None] = []
        if not comments:
            return ids
        with self.write() as db:
            wanted = sorted({seq for seq, *_ in comments})
            tickets: set[int] = set()
            known: dict[tuple[int, str], int] = {}
            for start in range(0, len(wanted), 500):
                chunk = tuple(wanted[start : start + 500])
                marks = ",".join("?" * len(chunk))
                query = f"SELECT seq FROM tickets WHERE seq IN ({marks})"
                tickets.update(int(seq) for (seq,) in db.execute(query, chunk))
                for seq, marker, comment_id in db.execute(
                    f"SELECT ticket, marker, id FROM ticket_comments WHERE ticket IN ({marks})",
                    chunk,
                ):
                    known[(int(seq), str(marker))] = int(comment_id)
            for seq, marker, body, now in comments:
                if seq not in tickets:
                    ids.append(None)
                    continue
                if (seq, marker) not in known:
                    cur = db.execute(
                        "INSERT INTO ticket_comments (ticket, marker, body, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (seq, marker, body, now),
                    )
                    known[(seq, marker)] = int(cur.lastrowid or 0)
                ids.append(known[(seq, marker)])
        return ids

    def ticket_payload(self, seq: int) -> dict[str, Any] | None:
        """The payload ticket ``seq`` was created with (None: no ticket)."""
        rows = self.read("SELECT payload FROM tickets WHERE seq = ?", (seq,))
        return json.loads(rows[0][0]) if rows else None

    def marked_tickets(self, seqs: Sequence[int], rule: str, mark: str) -> set[int]:
        """Of tickets ``seqs``, those created for ``rule`` or with a comment containing ``mark``.

        What :meth:`ticket_payload` and :meth:`ticket_comments` tell of each
        ticket, read with two queries per 500 tickets instead of two per ticket.
        """
        found: set[int] = set()
        wanted = sorted(set(seqs))
        for start in range(0, len(wanted), 500):
            chunk = tuple(wanted[start : start + 500])
            params = ",".join("?" * len(chunk))
            for (seq,) in self.read(  # the rule read out of the payload by SQLite
                f"SELECT seq FROM tickets WHERE seq IN ({params}) "
                "AND json_extract(payload, '$.rule') = ?",
                (*chunk, rule),
            ):
                found.add(int(seq))
            for (seq,) in self.read(
                f"SELECT DISTINCT ticket FROM ticket_comments WHERE ticket IN ({params}) "
                "AND instr(body, ?) > 0",
                (*chunk, mark),
            ):
                found.add(int(seq))
        return found

    def ticket_notes(self, seq: int) -> list[tuple[str, str]]:
        """The comments of ticket ``seq`` with when they were written, oldest first."""
        rows = self.read(
            "SELECT body, created_at FROM ticket_comments WHERE ticket = ? ORDER BY id", (seq,)
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def tickets_notes(self, seqs: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """:meth:`ticket_notes` of each ticket ``seqs`` (one query per 500), by seq; a ticket
        without comments is absent."""
        found: dict[int, list[tuple[str, str]]] = {}
        wanted = sorted(set(seqs))
        for start in range(0, len(wanted), 500):
            chunk = tuple(wanted[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for seq, body, at in self.read(
                f"SELECT ticket, body, created_at FROM ticket_comments WHERE ticket IN ({marks}) "
                "ORDER BY ticket, id",
                chunk,
            ):
                found.setdefault(int(seq), []).append((str(body), str(at)))
        return found

    def ticket_comments(self, seq: int) -> list[str]:
        """The comments of ticket ``seq``, oldest first."""
        rows = self.read("SELECT body FROM ticket_comments WHERE ticket = ? ORDER BY id", (seq,))
        return [str(r[0]) for r in rows]

    def finish_ticket(self, seq: int, status: str, now: str) -> str | None:
        """Move ticket ``seq`` to done ``status`` unless done; its status (None: no ticket)."""
        with self.write() as db:
            query = "SELECT status, closed_at FROM tickets WHERE seq = ?"
            row = db.execute(query, (seq,)).fetchone()
            if row is None:
                return None
            if row[1] is not None:
                return str(row[0])
            db.execute(
                "UPDATE tickets SET status = ?, closed_at = ? WHERE seq = ?", (status, now, seq)
            )
        return status

    # -- channel ----------------------------------------------------------------

    def store_message(
        self,
        idempotency_key: str,
        kind: str,
        payload: dict[str, Any],
        accepted_at: str,
        make_ref: Callable[[int], str],
        plan: Callable[[int, str], OutcomePlan],
    ) -> str:
        """Store a message and its future outcomes once; its provider ref either way."""
        message = StoredMessage(idempotency_key, kind, payload, plan)
        return self.store_messages([message], accepted_at, make_ref)[0]

    def store_messages(
        self, messages: Sequence[StoredMessage], accepted_at: str, make_ref: Callable[[int], str]
    ) -> list[str]:
        """:meth:`store_message` for each message, in one write transaction.

        The keys already stored are read with one query per 500 keys; the new
        messages are inserted with one ``executemany`` (their numbers in
        order, as one insert each would give them), read back by key, and
        given their provider refs and outcomes. A key twice in ``messages``
        is stored once, both answered with its ref.
        """
        if not messages:
            return []
        with self.write() as db:
            refs = _by_key(db, "messages", "provider_ref", [m.idempotency_key for m in messages])
            new: dict[str, StoredMessage] = {}
            for m in messages:
                if m.idempotency_key not in refs:
                    new.setdefault(m.idempotency_key, m)
            db.executemany(
                "INSERT INTO messages (idempotency_key, kind, payload, accepted_at) "
                "VALUES (?, ?, ?, ?)",
                [
                    (
                        m.idempotency_key,
                        m.kind,
                        _TEXT(m.payload),
                        accepted_at,
                    )
                    for m in new.values()
                ],
            )
            seqs = _by_key(db, "messages", "seq", list(new))
            outcomes: list[tuple[int, str, int, str]] = []
            updates: list[tuple[str, int]] = []
            for key, m in new.items():
                seq = int(seqs[key])
                ref = make_ref(seq)
                updates.append((ref, seq))
                outcomes.extend(
                    (seq, ev, ts, p if isinstance(p, str) else _TEXT(p))
                    for ev, ts, p in m.plan(seq, ref)
                )
                refs[key] = ref
            db.executemany("UPDATE messages SET provider_ref = ? WHERE seq = ?", updates)
            db.executemany(
                "INSERT INTO outcomes (message, event_id, occurred_ts, payload) "
                "VALUES (?, ?, ?, ?)",
                outcomes,
            )
        return [str(refs[m.idempotency_key]) for m in messages]

    # -- campaign questionnaires -------------------------------------------------

    def add_participant(
        self, survey: int, idempotency_key: str, token: str, invited_ts: int, plan: dict[str, Any]
    ) -> int:
        """Store a campaign participant once per idempotency key; their number either way."""
        with self.write() as db:
            row = db.execute(
                "SELECT seq FROM campaign_participants WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if row:
                return int(row[0])
            cur = db.execute(
                "INSERT INTO campaign_participants (survey, idempotency_key, token, invited_ts, "
                "plan) VALUES (?, ?, ?, ?, ?)",
                (survey, idempotency_key, token, invited_ts, json.dumps(plan, ensure_ascii=False)),
            )
            return int(cur.lastrowid or 0)

    def participant_seq(self, idempotency_key: str) -> int | None:
        rows = self.read(
            "SELECT seq FROM campaign_participants WHERE idempotency_key = ?", (idempotency_key,)
        )
        return int(rows[0][0]) if rows else None

    def participants(self, survey: int) -> list[dict[str, Any]]:
        """The survey's participants: seq, token, invited_ts, plan, reminded (epoch seconds)."""
        rows = self.read(
            "SELECT seq, token, invited_ts, plan, reminded FROM campaign_participants "
            "WHERE survey = ? ORDER BY seq",
            (survey,),
        )
        return [
            {
                "seq": int(seq),
                "token": token,
                "invited_ts": int(ts),
                "plan": json.loads(plan),
                "reminded": json.loads(reminded),
            }
            for seq, token, ts, plan, reminded in rows
        ]

    def set_reminded(self, seq: int, reminded: list[int]) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE campaign_participants SET reminded = ? WHERE seq = ?",
                (json.dumps(reminded), seq),
            )

    def lookup_message(self, idempotency_key: str) -> str | None:
        """The provider ref of the message stored under ``idempotency_key``, if any."""
        rows = self.read(
            "SELECT provider_ref FROM messages WHERE idempotency_key = ?", (idempotency_key,)
        )
        return str(rows[0][0]) if rows else None

    def release_due(self, now: int) -> None:
        """Give every outcome due by ``now`` its release number, in (instant, id) order."""
        with self.write() as db:
            due = db.execute(
                "SELECT id FROM outcomes WHERE release_seq IS NULL AND occurred_ts <= ? "
                "ORDER BY occurred_ts, id",
                (now,),
            ).fetchall()
            if not due:
                return
            top = db.execute("SELECT COALESCE(MAX(release_seq), 0) FROM outcomes").fetchone()[0]
            db.executemany(
                "UPDATE outcomes SET release_seq = ? WHERE id = ?",
                [(top + i, oid) for i, (oid,) in enumerate(due, 1)],
            )

    def released_after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` released outcomes after release number ``seq``, in release order."""
        rows = self.read(
            "SELECT release_seq, payload FROM outcomes WHERE release_seq > ? "
            "ORDER BY release_seq LIMIT ?",
            (seq, limit),
        )
        return [(int(s), _decode(p)) for s, p in rows]


def _decode(text: str) -> Any:
    """The value of stored JSON ``text``: orjson (the same values, faster), else ``json``
    for what orjson refuses (NaN, integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _by_key(
    db: sqlite3.Connection,
    table: str,
    column: str,
    keys: Sequence[str],
    key: str = "idempotency_key",
) -> dict[str, Any]:
    """``column`` of the rows of ``table`` whose ``key`` is one of ``keys``, by key."""
    found: dict[str, Any] = {}
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), 500):
        chunk = tuple(wanted[start : start + 500])
        marks = ",".join("?" * len(chunk))
        found.update(
            db.execute(f"SELECT {key}, {column} FROM {table} WHERE {key} IN ({marks})", chunk)
        )
    return found
