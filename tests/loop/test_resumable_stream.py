"""A pull resumes from its committed cursor; only failures in a row make it give up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.errors import RetriableError
from core.loop.common import MAX_RESTARTS, resumable


class FlakyStream:
    """Pages 0..n-1; raises before the pages listed in ``fail_before`` (once per listing)."""

    def __init__(self, pages: int, fail_before: list[int]) -> None:
        self.pages = pages
        self.fail_before = list(fail_before)
        self.committed: int | None = None
        self.opened: list[int | None] = []

    def open(self, cursor: str | None) -> Iterator[int]:
        start = int(cursor) + 1 if cursor is not None else 0
        self.opened.append(start)
        for page in range(start, self.pages):
            if page in self.fail_before:
                self.fail_before.remove(page)
                raise RetriableError(f"503 before page {page}", retry_after=0)
            yield page

    def cursor(self) -> str | None:
        return str(self.committed) if self.committed is not None else None


def test_scattered_failures_never_stop_a_long_pull() -> None:
    stream = FlakyStream(100, fail_before=list(range(3, 100, 7)))  # 14 failures in all
    got = []
    for page in resumable(stream.open, stream.cursor, lambda e, n: None, lambda s: None):
        got.append(page)
        stream.committed = page
    assert got == list(range(100))  # no page lost, none twice


def test_failures_in_a_row_give_up_and_keep_the_cursor() -> None:
    stream = FlakyStream(10, fail_before=[4] * (MAX_RESTARTS + 1))
    got = []
    with pytest.raises(RetriableError):
        for page in resumable(stream.open, stream.cursor, lambda e, n: None, lambda s: None):
            got.append(page)
            stream.committed = page
    assert got == [0, 1, 2, 3]
    assert stream.opened == [0] + [4] * MAX_RESTARTS
