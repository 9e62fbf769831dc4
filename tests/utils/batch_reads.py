"""What the batch-read tests share: a batch read (``ticket_statuses``,
``ticket_notes_many``) must answer what one read per ticket answers, and the
loop's steps fall back to single reads when a batch fails.

Used by tests/connectors/test_status_batches_*.py and
tests/complaints/test_notes_batch_*.py.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from core.errors import FatalError, RetriableError
from core.runtime import Runtime


def retrying_runtime(sources: dict[str, Any]) -> Runtime:
    """A runtime holding ``sources`` by name whose ``call`` retries once on a RetriableError
    (a second one is raised), as the steps' calls do without the waits."""

    def call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RetriableError:
            return fn()

    return cast("Runtime", SimpleNamespace(source=sources.__getitem__, call=call))


def answers(read: Callable[[str], Any], refs: list[str]) -> list[Any]:
    """``read(ref)`` of each ref, in order; a FatalError is kept as the answer."""
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(read(ref))
        except FatalError as exc:
            out.append(exc)
    return out


def assert_same(batch: list[Any], single: list[Any]) -> None:
    """The batch's answers are the single reads': equal values, errors of the same type
    and message."""
    assert len(batch) == len(single)
    for a, b in zip(batch, single, strict=True):
        if isinstance(b, Exception):
            assert type(a) is type(b) and str(a) == str(b)
        else:
            assert a == b


def read_both(
    count: Callable[[], int],
    many: Callable[[list[str]], list[Any]],
    one: Callable[[str], Any],
    asked: list[str],
) -> tuple[list[Any], int, list[Any], int]:
    """``many(asked)`` then :func:`answers` of ``one``: each read's answers and the requests
    it cost, as ``count()`` (the fake's request counter) tells."""
    before = count()
    batch = many(asked)
    batch_calls = count() - before
    before = count()
    singles = answers(one, asked)
    return batch, batch_calls, singles, count() - before
