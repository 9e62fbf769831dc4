"""The database guard: two workers never run the same job key at once.

A lease is one ``job_lease`` row per job key (``sync:itsm``, ``collect:phone``,
``dispatch``…) naming its owner and an expiry. Taking it is one atomic
statement on SQLite and PostgreSQL alike — ``INSERT … ON CONFLICT (key) DO
UPDATE … WHERE expires_at < now`` — so of two racing workers exactly one
wins; the other is told who holds the key and skips. While the step runs a
thread renews the lease every third of its time to live; at the end the
owner deletes the row. A worker killed mid-step (SIGKILL) stops renewing,
so its lease expires after at most ``ttl`` seconds and the next worker
takes it over and redoes the step (steps are idempotent).

A process on the same machine need not wait for the expiry: an owner names
its host, PID namespace and PID (:func:`default_owner`), so a lease whose
owner process is gone from this machine is taken over at once (a ``qloop
run`` or scheduler restarted after a crash). Owners of other machines, or
of processes that still exist, are left to their expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import ConfigError
from core.store import Database
from core.store.models import JobLease
from core.timeutil import utcnow

log = logging.getLogger("qloop.guard")

DEFAULT_TTL_S = 120.0
"""How long a lease lives without renewal: a killed worker's key is free after this."""


def _pid_namespace() -> str:
    """This process's PID namespace (``4026531836``), or ``-`` where it cannot be read.

    Two containers may share a host name but not a PID namespace: the PID of
    an owner means something here only when both match.
    """
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "-"
    return link.partition("[")[2].rstrip("]") or "-"


_HOST = socket.gethostname()
_PID_NS = _pid_namespace()


def default_owner(job_id: str | None = None) -> str:
    """``host:pidns:pid:job`` (or a random suffix): who holds a lease, as logs show it."""
    suffix = job_id or uuid.uuid4().hex[:8]
    return f"{_HOST}:{_PID_NS}:{os.getpid()}:{suffix}"[:200]


def owner_is_gone(owner: str) -> bool:
    """True when ``owner`` names a process of this machine that no longer exists.

    False whenever that cannot be known for sure (another host or PID
    namespace, an owner not made by :func:`default_owner`, a PID that exists,
    even a zombie or one of another user): the lease then runs to its expiry.
    """
    parts = owner.split(":", 3)
    if len(parts) != 4 or parts[0] != _HOST or parts[1] != _PID_NS or _PID_NS == "-":
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False


@dataclass(frozen=True)
class Holder:
    """Who holds a key, and until when."""

    owner: str
    expires_at: datetime


def _upsert(db: Database, key: str, owner: str, now: datetime, expires: datetime) -> bool:
    """Insert the lease, or take over an expired one (or our own); True when we hold it."""
    values = {"key": key, "owner": owner, "acquired_at": now, "expires_at": expires}
    table = JobLease.__table__
    takeover_ok = (table.c.expires_at < now) | (table.c.owner == owner)
    take = {"owner": owner, "acquired_at": now, "expires_at": expires}
    dialects: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    if db.dialect not in dialects:
        msg = f"database_url: job leases need SQLite or PostgreSQL, not {db.dialect}"
        raise ConfigError(msg)
    stmt = dialects[db.dialect](JobLease).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_=take, where=takeover_ok)
    with db.engine.begin() as conn:  # RETURNING: a row comes back only if we inserted or took over
        return conn.execute(stmt.returning(table.c.owner)).scalar() == owner


def acquire(
    db: Database,
    key: str,
    owner: str,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Take the lease on ``key`` for ``owner``; False when another owner holds it.

    An unexpired lease is taken over only when its owner process is gone from
    this machine (:func:`owner_is_gone`), by a compare-and-set on the owner so
    that of two processes doing so at once only one wins.
    """
    now = clock()
    expires = now + timedelta(seconds=ttl_s)
    if _upsert(db, key, owner, now, expires):
        return True
    held = holder(db, key)
    if held is None or not owner_is_gone(held.owner):
        return False
    stmt = (
        update(JobLease)
        .where(JobLease.key == key, JobLease.owner == held.owner)
        .values(owner=owner, acquired_at=now, expires_at=expires)
    )
    with db.engine.begin() as conn:
        taken = conn.execute(stmt).rowcount == 1
    if taken:
        log.warning("lease %s: taken over from %s, a process that is gone", key, held.owner)
    return taken


def renew(
    db: Database,
    key: str,
    owner: str,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Callable[[], datetime] = utcnow,
) -> bool:
    """Push the expiry of our lease forward; False when we no longer hold it."""
    now = clock()
    stmt = (
        update(JobLease)
        .where(JobLease.key == key, JobLease.owner == owner)
        .values(expires_at=now + timedelta(seconds=ttl_s))
    )
    with db.engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def release(db: Database, key: str, owner: str) -> bool:
    """Delete our lease on ``key``; False when it had expired and been taken over."""
    with db.engine.begin() as conn:
        stmt = delete(JobLease).where(JobLease.key == key, JobLease.owner == owner)
        return conn.execute(stmt).rowcount == 1


def holder(db: Database, key: str) -> Holder | None:
    """Who holds ``key`` now (expired leases included), or None."""
    with db.session() as s:
        row = s.scalar(select(JobLease).where(JobLease.key == key))
        return None if row is None else Holder(row.owner, row.expires_at)


class _Renewer(threading.Thread):
    """Renews a lease every ``ttl/3`` seconds until stopped."""

    def __init__(
        self, db: Database, key: str, owner: str, ttl_s: float, clock: Callable[[], datetime]
    ) -> None:
        super().__init__(name=f"lease-{key}", daemon=True)
        self._db, self._key, self._owner, self._ttl, self._clock = db, key, owner, ttl_s, clock
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._ttl / 3):
            try:
                if not renew(self._db, self._key, self._owner, self._ttl, self._clock):
                    log.warning("lease %s: lost to another owner while running", self._key)
                    return
            except Exception:  # a failed renewal is retried next period; the step goes on
                log.exception("lease %s: renewal failed", self._key)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextmanager
def lease(
    db: Database,
    key: str,
    owner: str,
    ttl_s: float = DEFAULT_TTL_S,
    clock: Callable[[], datetime] = utcnow,
) -> Iterator[Holder | None]:
    """Hold ``key`` for the block, renewed in the background, released at the end.

    Yields None when we hold the lease, else the :class:`Holder` that does
    (the block should then skip its work and say so).
    """
    if not acquire(db, key, owner, ttl_s, clock):
        yield holder(db, key) or Holder("(unknown)", clock())
        return
    renewer = _Renewer(db, key, owner, ttl_s, clock)
    renewer.start()
    try:
        yield None
    finally:
        renewer.stop()
        if not release(db, key, owner):
            log.warning("lease %s: had expired and been taken over before the end", key)
