"""Webhook deliveries committed together under load, each answered only after its commit.

A few writer threads per server process (:data:`WRITERS`, each keeping
its connection while there is work) take the verified deliveries waiting for them and
store them in one short transaction per batch
(:func:`core.loop.intake.store_deliveries`), then resolves each request's
future; the request answers 2xx only then. Idle, a delivery is committed
alone at once (no wait is added to gather a batch); under load the
deliveries that arrived during the previous commit share the next one, so
the commits per second stay few while the deliveries per second grow.

A batch that fails is stored again one delivery at a time, so a delivery
the store refuses fails alone (a 500) and the others are committed. The
thread ends after :data:`IDLE_S` without work and starts again with the
next delivery, so an app that is closed leaves no thread behind.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy import Connection

from core.loop.intake import Delivery, Stored, store_deliveries
from core.runtime import Runtime

log = logging.getLogger("qloop.intake")

MAX_ROWS = 1000
"""Most outcomes one transaction takes; the rest wait for the next."""
IDLE_S = 2.0
"""How long a writer thread waits for work before it ends."""
WRITERS = 4
"""Transactions in flight at once per process: one commit's wait overlaps the next batch."""

_Item = tuple[Delivery, "Future[Stored]"]


class IntakeWriter:
    """Stores verified deliveries for one runtime, batching those that arrive together."""

    def __init__(
        self,
        rt: Runtime,
        *,
        max_rows: int = MAX_ROWS,
        idle_s: float = IDLE_S,
        writers: int = WRITERS,
    ) -> None:
        self.rt = rt
        self.max_rows = max_rows
        self.idle_s = idle_s
        self.writers = writers
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self.commits = 0
        """Transactions committed (a test and a benchmark read it)."""

    def submit(self, delivery: Delivery) -> Future[Stored]:
        """Queue ``delivery``; its future is resolved once it is committed (or failed)."""
        done: Future[Stored] = Future()
        with self._lock:
            self._queue.put((delivery, done))
            if self._threads < self.writers:
                self._threads += 1
                threading.Thread(target=self._run, name="qloop-intake", daemon=True).start()
        return done

    def _next_batch(self) -> list[_Item] | None:
        try:
            first = self._queue.get(timeout=self.idle_s)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():  # nothing came in meanwhile: end; submit restarts us
                    self._threads -= 1
                    return None
            return []
        batch, rows = [first], len(first[0].outcomes)
        while rows < self.max_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            rows += len(item[0].outcomes)
        return batch

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                # a request gone meanwhile (its client hung up) is still stored: the
                # provider retries it and the retry is a duplicate; from here no future
                # can be cancelled any more, so each gets its answer
                for _, done in batch:
                    done.set_running_or_notify_cancel()
                if batch:
                    conn = self._write(conn, batch)
                if conn is not None and self._queue.empty():  # idle: the pool gets it back
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _write(self, conn: Connection | None, batch: Sequence[_Item]) -> Connection | None:
        """Store ``batch`` in one transaction on the thread's connection; the connection next."""
        try:
            if conn is None:
                conn = self.rt.db.engine.connect()
            with conn.begin():  # committed when the block ends
                stored = store_deliveries(conn, [d for d, _ in batch], self.rt.now())
            self.commits += 1
        except Exception as exc:
            if conn is not None:  # the connection may be broken: the next batch takes a new one
                conn.invalidate()
                conn.close()
                conn = None
            if len(batch) > 1:  # find the delivery the store refuses: the others go in
                log.warning("intake: a batch of %d failed (%s); one by one", len(batch), exc)
                for item in batch:
                    conn = self._write(conn, [item])
                return conn
            if not batch[0][1].cancelled():
                batch[0][1].set_exception(exc)
            return conn
        for (_, done), result in zip(batch, stored, strict=True):
            if not done.cancelled():
                done.set_result(result)
        return conn
