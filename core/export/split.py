"""The incidents file of a large month's export written by several processes at once.

The export's rows are cut by their ORDER BY key (the record's resolved_at,
then the incident id) into contiguous ranges of about as many rows each
(:func:`~core.export.rows.export_split_keys`). When the parent starts
reading its rows, a forked child per later range opens its own engine,
reads, converts and encodes its range (the same code as one process) into a
hidden temporary file beside the export; the parent writes the first range
itself, then appends the children's files in order
(:attr:`~core.export.writers.Table.tail`): the same bytes as one process,
which encodes each row alone of the others, batch boundaries aside. Each
child sends back how many rows it wrote and its records' indicator counts;
the month's indicators are folded from all of them.

The export fails (:class:`~core.errors.StateError`; no file is renamed into
place, :func:`core.export.files.write_files`) when a child fails or when
the parts hold another number of rows than the month had when it was cut
(a record moved between ranges while the processes read them: lost or
written twice otherwise). A failed or stopped export stops the children
still running and removes their files. Stores that cannot be shared
between processes (in-memory SQLite) and platforms without ``fork`` write
the file in one process. XLSX is always written by one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from core.errors import StateError
from core.export.files import TEMP_SUFFIX
from core.export.rows import (
    COLUMN_KINDS,
    COLUMNS,
    ExportKey,
    KeyRange,
    RecordTally,
    export_columns,
    export_split_keys,
)
from core.export.writers import CHUNK_BYTES, Table, csv_chunks, jsonl_chunks
from core.gcfreeze import fewer_collections, old_objects_frozen
from core.loop.evaluate_parallel import _fork_context, _shareable
from core.runtime import Runtime
from core.store.db import open_database

MIN_PER_PROCESS = 20_000
"""Fewer rows per process than this: one process (a fork and a second sort cost more)."""
FIRST_SHARE = 0.75
"""The parent's part, in parts of a child: it also cuts the month, folds the indicators
and copies the children's files (measured: ~1.3× a child's CPU with equal parts)."""

log = logging.getLogger("qloop.export")


@dataclass
class _Child:
    keys: KeyRange
    path: Path
    process: Any = None
    receive: Connection | None = None


@dataclass
class SplitIncidents:
    """The incidents table of one policy's month, its ranges after the first written by
    forked children (see the module doc). :meth:`rows`: the parent's batches (starting the
    children on the first read); :meth:`chunks` and :meth:`close`: the table's
    :class:`~core.export.writers.Tail`, the children's bytes (then the tally is done)."""

    rt: Runtime
    session: Any
    policy: str
    version: str
    month: str
    tz: Any
    unmask: bool
    tally: RecordTally
    """The month's: done once every part's counts are in it."""
    rows_expected: int
    keys: Sequence[ExportKey]
    folder: Path
    """Where the children's temporary files go (the export's folder)."""
    fmt: str
    """The format the children write: csv or jsonl."""
    children: list[_Child] = field(default_factory=list)
    rows_written: int = 0

    def table(self) -> Table:
        return Table(
            "incidents",
            COLUMNS,
            self.rows(),
            kinds=COLUMN_KINDS,
            columnar=True,
            tail=self,
        )

    def rows(self) -> Iterator[list[Sequence[Any]]]:
        """The first range's batches; the children are started before the first."""
        own = RecordTally()
        try:
            self._start()
            for batch in export_columns(
                self.session,
                policy=self.policy,
                version=self.version,
                month=self.month,
                tz=self.tz,
                unmask=self.unmask,
                tally=own,
                keys=(None, self.keys[0]),
            ):
                self.rows_written += len(batch[0]) if batch else 0
                yield batch
        except BaseException:
            self.close()
            raise
        self.tally.counts.update(own.counts)

    def _start(self) -> None:
        ctx = _fork_context()
        bounds = [*self.keys, None]
        for k, low in enumerate(self.keys):
            keys: KeyRange = (low, bounds[k + 1])
            path = self.folder / f".incidents.{secrets.token_hex(6)}.{k + 1}{TEMP_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            child = _Child(keys, path)
            self.children.append(child)
            try:
                receive, send = ctx.Pipe(duplex=False)
                child.receive = receive
                child.process = ctx.Process(
                    target=_write_part, args=(self, keys, fd, send), daemon=True
                )
                child.process.start()
                send.close()
            finally:
                os.close(fd)

    def chunks(self, fmt: str) -> Iterator[bytes]:
        """The children's files in order, once each ended well; then the tally is done."""
        if fmt != self.fmt:
            msg = f"the parts were written as {self.fmt}, not {fmt}"
            raise ValueError(msg)
        try:
            for child in self.children:
                rows, counts = self._wait(child)
                self.rows_written += rows
                self.tally.counts.update(counts)
            if self.rows_written != self.rows_expected:
                msg = (
                    f"export of {self.month}: the month's records changed while its parts "
                    f"were read ({self.rows_written} rows written, {self.rows_expected} "
                    "counted); export it again"
                )
                raise StateError(msg)
            for child in self.children:
                with open(child.path, "rb") as fh:
                    while chunk := fh.read(CHUNK_BYTES):
                        yield chunk
                child.path.unlink()
            self.tally.done = True
        finally:
            self.close()

    def _wait(self, child: _Child) -> tuple[int, Counter[tuple[Any, ...]]]:
        assert child.receive is not None and child.process is not None
        try:
            kind, payload = child.receive.recv()
        except EOFError:
            kind, payload = "error", "the process ended without an answer"
        child.process.join()
        child.receive.close()
        if kind == "ok" and child.process.exitcode == 0:
            rows, counts = payload
            return rows, counts
        why = payload if kind != "ok" else f"exit code {child.process.exitcode}"
        msg = f"export of {self.month}: the process writing rows from {child.keys[0]} failed: {why}"
        raise StateError(msg)

    def close(self) -> None:
        """End the children still running and remove their files (idempotent)."""
        for child in self.children:
            if child.process is not None and child.process.is_alive():
                child.process.terminate()
                child.process.join()
            if child.receive is not None:
                child.receive.close()
            with contextlib.suppress(FileNotFoundError):
                child.path.unlink()
        self.children = []


def _write_part(split: SplitIncidents, keys: KeyRange, fd: int, send: Connection) -> None:
    """A forked child: write the rows of ``keys`` into ``fd`` with its own engine; send
    back ("ok", (rows, counts)) or ("error", traceback)."""
    db = None
    try:
        db = open_database(split.rt.db.url, migrate_schema=False)
        tally = RecordTally()
        rows = 0
        with old_objects_frozen(), fewer_collections(), db.session() as s:
            batches = export_columns(
                s,
                policy=split.policy,
                version=split.version,
                month=split.month,
                tz=split.tz,
                unmask=split.unmask,
                tally=tally,
                keys=keys,
            )

            def counted() -> Iterator[list[Sequence[Any]]]:
                nonlocal rows
                for batch in batches:
                    rows += len(batch[0]) if batch else 0
                    yield batch

            table = Table("incidents", COLUMNS, counted(), kinds=COLUMN_KINDS, columnar=True)
            chunks = csv_chunks(table, header=False) if split.fmt == "csv" else jsonl_chunks(table)
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
        send.send(("ok", (rows, tally.counts)))
    except BaseException:
        log.exception("export: the part from %s failed", keys[0])
        send.send(("error", traceback.format_exc(limit=-3)))
    finally:
        if db is not None:
            db.dispose()
        send.close()


def split_incidents(
    rt: Runtime,
    session: Any,
    *,
    policy: str,
    version: str,
    month: str,
    tz: Any,
    unmask: bool,
    tally: RecordTally,
    processes: int,
    folder: Path,
    fmt: str,
    least: int | None = None,
) -> Table | None:
    """The incidents table written by up to ``processes`` processes, or None (the caller
    writes it in one) when it is not worth it (fewer than ``least`` rows a process, default
    :data:`MIN_PER_PROCESS`) or not possible here (see the module doc)."""
    if processes <= 1 or fmt not in ("csv", "jsonl") or _fork_context() is None:
        return None
    if not _shareable(rt):
        return None
    rows, keys = export_split_keys(
        session,
        policy=policy,
        version=version,
        month=month,
        parts=processes,
        least=MIN_PER_PROCESS if least is None else least,
        first_share=FIRST_SHARE,
    )
    if not keys:
        return None
    split = SplitIncidents(
        rt, session, policy, version, month, tz, unmask, tally, rows, keys, folder, fmt
    )
    return split.table()
