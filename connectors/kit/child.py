"""A pull's fetching and converting in a child process, its batches read by the parent.

:func:`in_child` runs an iterator of batches in a forked child and yields,
in the parent, what it made: the child requests, decodes and maps pages
while the parent (qloop's one writer) stores the previous batch. The two
overlap, so a pull costs the parent only its store, not its conversion.

What crosses the pipe is each :class:`~core.records.PulledBatch` (records,
rejected records, the cursor) as compact values (:mod:`connectors.kit.wire`):
the mapped records, not the raw pages. The pipe holds less than a batch, so
the child is at most one batch ahead of the one being sent (and its own
prefetch one page ahead of that): memory stays bounded, and the parent commits
a batch's rows and its cursor as in one process, so a crash (of either) loses
nothing and a restart resumes from the last committed cursor.

An error in the child (a :class:`~core.errors.RetriableError` after its
in-call retries, an :class:`~core.errors.FatalError`) is raised in the
parent where the child met it, with its type and attributes; a child that
ends without a word (killed) is a :class:`RetriableError`, so the pull
restarts from its cursor. A parent that stops reading (an error while
storing, its own end) stops the child: the child's next send fails, and the
parent terminates it on the way out.

The child is forked: it starts with the parent's connector (its HTTP clients
get fresh connections, :mod:`connectors.http`), and leaves the parent's
store alone. It has its own copy of the process's host budgets: with the
deployment's ``redis_url`` the rate and the 429 pauses are shared with
every process; without it the child's budget is its own (the parent makes
no request to that source while the child runs).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import pickle
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from core.errors import RetriableError
from core.gcfreeze import old_objects_frozen

log = logging.getLogger(__name__)
T = TypeVar("T")

_ITEM, _ERROR, _END = 0, 1, 2
SWITCH_INTERVAL_S = 0.0005
"""The child's GIL switch interval (Python's default: 0.005 s)."""

PULL_PROCESS_SCHEMA: dict[str, object] = {
    "pull_process": {
        "type": "boolean",
        "default": False,
        "description": "fetch and convert the pages in a child process while this one "
        "stores them (two cores: a faster pull; the child shares the rate budget and 429 "
        "pauses with others only through redis_url)",
    },
}
"""The option of a source whose driver can pull in a child (``Driver.in_child``)."""


def in_child(
    produce: Callable[[], Iterator[T]],
    where: str,
    pack: Callable[[T], Any] = lambda item: item,
    unpack: Callable[[Any], T] = lambda packed: packed,
) -> Iterator[T]:
    """The items of ``produce()``, made in a forked child process (module docstring).

    Each crosses the pipe as ``pack(item)``, pickled, and is yielded as
    ``unpack`` of that (:mod:`connectors.kit.wire` for pulled batches).
    """
    # the objects alive at the fork are left out of this process's collections while the
    # child lives: a collection writes into every object it walks, which would copy the
    # pages this process shares with the child (its memory then counted twice)
    with old_objects_frozen():
        yield from _read(produce, where, pack, unpack)


def _read(
    produce: Callable[[], Iterator[T]],
    where: str,
    pack: Callable[[T], Any],
    unpack: Callable[[Any], T],
) -> Iterator[T]:
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_run, args=(produce, pack, reader, writer), name=f"qloop-pull {where}", daemon=True
    )
    child.start()
    writer.close()  # the child holds the only writing end: its end (or death) is our EOF
    try:
        while True:
            try:
                kind, value = reader.recv()
            except EOFError:
                child.join(5)
                msg = f"{where}: the pull's child process ended early (exit {child.exitcode})"
                raise RetriableError(msg) from None
            if kind == _ITEM:
                yield unpack(value)
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        reader.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _run(
    produce: Callable[[], Iterator[T]],
    pack: Callable[[T], Any],
    reader: Connection,
    writer: Connection,
) -> None:
    """The child: send each item, then the end or the error (as the parent will raise it)."""
    reader.close()  # else the parent's death would not break our pipe
    # the prefetch thread waits for the next page while this one converts: a short switch
    # interval hands it the GIL soon after its response arrives, so the next request
    # leaves without waiting out up to 5 ms of conversion (the default interval)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # what the parent made is never walked by the child's collector: its collections stay
    # as cheap as a fresh process's, and the pages it shares with its parent stay shared
    # (a collection writes into every object it walks); freezing is a list splice
    gc.freeze()
    try:
        try:
            for item in produce():
                writer.send((_ITEM, pack(item)))
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent stopped reading: nothing to tell it
        except Exception as exc:
            log.debug("pull child: %s", exc, exc_info=True)
            writer.send((_ERROR, _portable(exc)))
            return
        writer.send((_END, None))
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        writer.close()


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a :class:`RuntimeError` with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
