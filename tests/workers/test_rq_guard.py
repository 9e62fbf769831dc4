"""The job lease: one owner per key at a time, taken atomically, stolen only after expiry."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta

from core.store import open_database
from tests.conftest import ROOT
from tests.utils.loop import FakeClock
from workers import guard


def test_a_held_key_is_refused_to_another_owner_until_it_expires(database_url: str) -> None:
    db = open_database(database_url)
    clock = FakeClock()
    try:
        assert guard.acquire(db, "sync:itsm", "a", ttl_s=60, clock=clock)
        assert guard.acquire(db, "sync:itsm", "a", ttl_s=60, clock=clock)  # re-entrant
        assert not guard.acquire(db, "sync:itsm", "b", ttl_s=60, clock=clock)
        assert guard.acquire(db, "sync:other", "b", ttl_s=60, clock=clock)  # keys are separate
        held = guard.holder(db, "sync:itsm")
        assert held is not None
        assert held.owner == "a"
        assert held.expires_at == clock.now + timedelta(seconds=60)

        clock.advance(seconds=59)
        assert guard.renew(db, "sync:itsm", "a", ttl_s=60, clock=clock)
        clock.advance(seconds=59)
        assert not guard.acquire(db, "sync:itsm", "b", ttl_s=60, clock=clock)  # renewed
        clock.advance(seconds=2)
        assert guard.acquire(db, "sync:itsm", "b", ttl_s=60, clock=clock)  # expired: stolen
        assert not guard.renew(db, "sync:itsm", "a", ttl_s=60, clock=clock)
        assert not guard.release(db, "sync:itsm", "a")  # not a's any more
        assert guard.release(db, "sync:itsm", "b")
        assert guard.holder(db, "sync:itsm") is None
    finally:
        db.dispose()


def test_racing_owners_get_the_lease_exactly_once(database_url: str) -> None:
    db = open_database(database_url)
    winners: list[str] = []
    start = threading.Barrier(8)

    def race(owner: str) -> None:
        start.wait()
        if guard.acquire(db, "sync:itsm", owner):
            winners.append(owner)

    try:
        threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
    finally:
        db.dispose()


def test_lease_block_skips_when_held_and_releases_at_the_end(database_url: str) -> None:
    db = open_database(database_url)
    try:
        with guard.lease(db, "dispatch", "a", ttl_s=30) as held_by:
            assert held_by is None
            with guard.lease(db, "dispatch", "b", ttl_s=30) as other:
                assert other is not None
                assert other.owner == "a"
        assert guard.holder(db, "dispatch") is None
    finally:
        db.dispose()


def _owner_in_child(alive: bool) -> tuple[str, subprocess.Popen[bytes]]:
    """The lease owner a child process would write, and the child (running or reaped)."""
    code = "from workers import guard; print(guard.default_owner('job'), flush=True)"
    if alive:
        code += "; import time; time.sleep(60)"
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, env=dict(os.environ)
    )
    assert child.stdout is not None
    owner = child.stdout.readline().decode().strip()
    if not alive:
        child.communicate(timeout=30)  # gone, and reaped
    return owner, child


def test_a_lease_of_a_process_gone_from_this_machine_is_taken_over_at_once(
    database_url: str,
) -> None:
    db = open_database(database_url)
    clock = FakeClock()
    dead, _ = _owner_in_child(alive=False)
    live, child = _owner_in_child(alive=True)
    try:
        assert dead.split(":")[0] == socket.gethostname() and dead.endswith(":job")
        assert guard.owner_is_gone(dead)
        assert not guard.owner_is_gone(live)  # still running
        assert not guard.owner_is_gone(guard.default_owner())  # this very process
        assert not guard.owner_is_gone(dead.replace(socket.gethostname(), "other-host", 1))
        ns = dead.split(":")[1]
        assert not guard.owner_is_gone(dead.replace(f":{ns}:", ":4026530000:", 1))  # container
        assert not guard.owner_is_gone("worker-7")  # not made by default_owner: unknown

        assert guard.acquire(db, "sync:itsm", dead, ttl_s=120, clock=clock)
        assert guard.acquire(db, "sync:live", live, ttl_s=120, clock=clock)
        me = guard.default_owner("restarted")
        assert guard.acquire(db, "sync:itsm", me, ttl_s=120, clock=clock)  # no wait for expiry
        assert guard.holder(db, "sync:itsm") == guard.Holder(me, clock.now + timedelta(seconds=120))
        assert not guard.acquire(db, "sync:live", me, ttl_s=120, clock=clock)
        assert guard.holder(db, "sync:live").owner == live  # type: ignore[union-attr]
    finally:
        child.kill()
        child.communicate()
        db.dispose()
