"""Reading something of many tickets: a call per source that reads batches, else one per ticket."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from core.errors import QloopError, RetriableError
from core.loop.common import log, replaying
from core.runtime import Runtime

T = TypeVar("T")


def read_tickets(
    rt: Runtime,
    what: str,
    by_target: dict[str, list[str]],
    batch: Callable[[Any], Callable[[list[str]], Sequence[T | Exception]] | None],
    single: Callable[[Any], Callable[[str], T] | None],
) -> dict[str, T | Exception]:
    """What ``single(source)(ref)`` reads of each ticket ref, by ref, for the refs of each target.

    ``batch(source)`` gives the source's call reading many refs at once
    (answers in the refs' order, an exception for a ticket that failed), or
    None; ``single(source)`` the call for one ref, or None when the source
    cannot read it (its refs are then absent). A ticket a batch failed for
    (retriable), or all of a batch that failed, is read again on its own as a
    retry of that attempt; a failed read is its exception; an error that is
    not a :class:`QloopError` goes up. ``what`` names the reads in the log.
    """
    found: dict[str, T | Exception] = {}
    for target, refs in by_target.items():
        source = rt.source(target)
        one = single(source)
        if one is None:
            continue
        many = batch(source)
        first: dict[str, T | Exception] = {}
        if many is not None:
            try:
                answers = rt.call(lambda many=many, refs=refs: many(refs))  # type: ignore[misc]
                first = dict(zip(refs, answers, strict=True))
            except QloopError as exc:
                log.warning("%s of %d tickets in %s failed: %s", what, len(refs), target, exc)
        for ref in refs:
            answer = first.get(ref)
            if answer is not None and not isinstance(answer, RetriableError):
                found[ref] = answer
                continue
            retried = answer if isinstance(answer, Exception) else None
            try:
                found[ref] = rt.call(replaying(retried, lambda ref=ref, one=one: one(ref)))  # type: ignore[misc]
            except QloopError as exc:
                found[ref] = exc
    return found
