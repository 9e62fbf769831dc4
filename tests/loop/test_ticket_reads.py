"""read_tickets: a batch call per source where it can, each ticket on its own otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import FatalError, RetriableError
from core.loop.ticket_reads import read_tickets

T = TypeVar("T")


class Source:
    def __init__(self, batch_fails: bool = False) -> None:
        self.batch_fails = batch_fails
        self.batches: list[list[str]] = []
        self.singles: list[str] = []

    def many(self, refs: list[str]) -> list[Any]:
        self.batches.append(list(refs))
        if self.batch_fails:
            raise RetriableError("batch endpoint down")
        return [
            RetriableError("busy") if r == "b" else FatalError("gone") if r == "c" else r.upper()
            for r in refs
        ]

    def one(self, ref: str) -> str:
        self.singles.append(ref)
        return ref.upper() + "!"


class Rt:
    """rt.source and rt.call as the runtime gives them: a call retried once when retriable."""

    def __init__(self, sources: dict[str, Source | None]) -> None:
        self.sources = sources
        self.attempts = 0

    def source(self, name: str) -> Source | None:
        return self.sources[name]

    def call(self, fn: Callable[[], T]) -> T:
        for tries in range(2):
            self.attempts += 1
            try:
                return fn()
            except RetriableError:
                if tries:
                    raise
        raise AssertionError


def _read(rt: Rt, by_target: dict[str, list[str]]) -> dict[str, Any]:
    return read_tickets(
        rt,  # type: ignore[arg-type]
        "test",
        by_target,
        lambda s: s.many if s is not None else None,
        lambda s: s.one if s is not None else None,
    )


def test_batch_answers_are_kept_and_a_retriable_one_is_read_again_alone() -> None:
    src = Source()
    found = _read(Rt({"itsm": src}), {"itsm": ["a", "b", "c"]})
    assert src.batches == [["a", "b", "c"]]
    assert src.singles == ["b"]  # only the retriable answer, read on its own
    assert found["a"] == "A" and found["b"] == "B!"
    assert isinstance(found["c"], FatalError)  # a final answer is kept as it is


def test_a_failed_batch_reads_every_ticket_alone_and_a_source_that_cannot_read_is_skipped() -> None:
    src = Source(batch_fails=True)
    found = _read(Rt({"itsm": src, "none": None}), {"itsm": ["a", "b"], "none": ["z"]})
    assert src.singles == ["a", "b"]
    assert found == {"a": "A!", "b": "B!"}
