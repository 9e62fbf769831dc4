"""One retry policy for calls to remote systems (tenacity).

Short, in-call retries live here: a connector call that raises
:class:`RetriableError` is tried again after ``retry_after`` when the remote
said so, else after an exponential backoff. Longer-term retries of sends
are the outbox's job (:func:`outbox_delay`), and job retries are RQ's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, nap, retry_if_exception_type, stop_after_attempt

from core.errors import RetriableError

T = TypeVar("T")

DEFAULT_ATTEMPTS = 4
"""Tries of one remote call before the error goes up."""
DEFAULT_INITIAL_WAIT = 0.5
DEFAULT_MAX_WAIT = 30.0
"""A Retry-After longer than this is not waited for in-call: the error goes up."""


class WaitRetryAfter:
    """Wait what the remote asked (``retry_after``), else exponential backoff with jitter."""

    def __init__(
        self,
        initial: float = DEFAULT_INITIAL_WAIT,
        maximum: float = DEFAULT_MAX_WAIT,
        jitter: bool = True,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, RetriableError) else None
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.maximum))
        delay = min(self.initial * 2.0 ** (state.attempt_number - 1), self.maximum)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


def _retry_after_too_long(maximum: float) -> Callable[[RetryCallState], bool]:
    def check(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, RetriableError):
            return False
        return exc.retry_after is not None and exc.retry_after > maximum

    return check


def make_retrying(
    attempts: int = DEFAULT_ATTEMPTS,
    wait: Callable[[RetryCallState], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Retrying:
    """A tenacity ``Retrying`` that retries :class:`RetriableError` only.

    ``wait`` and ``sleep`` are injectable so tests run without waiting.
    """
    waiter = wait or WaitRetryAfter()
    maximum = float(getattr(waiter, "maximum", DEFAULT_MAX_WAIT))
    return Retrying(
        retry=retry_if_exception_type(RetriableError) & ~_RetryIf(_retry_after_too_long(maximum)),
        stop=stop_after_attempt(attempts),
        wait=waiter,
        reraise=True,
        sleep=sleep if sleep is not None else nap.sleep,
    )


class _RetryIf:
    """tenacity retry predicate from a plain function (so it composes with ``&``/``~``)."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self.predicate = predicate

    def __call__(self, state: RetryCallState) -> bool:
        return self.predicate(state)

    def __invert__(self) -> _RetryIf:
        return _RetryIf(lambda s: not self.predicate(s))

    def __rand__(self, other: Callable[[RetryCallState], bool]) -> _RetryIf:
        return _RetryIf(lambda s: bool(other(s)) and self.predicate(s))


def call_with_retry(fn: Callable[[], T], retrying: Retrying | None = None) -> T:
    """Call ``fn`` under ``retrying`` (default: :func:`make_retrying`)."""
    return (retrying or make_retrying())(fn)


def outbox_delay(attempt: int, initial_s: float, max_s: float, retry_after: float | None) -> float:
    """Seconds before the outbox tries an item again after its ``attempt``-th failure."""
    backoff = min(initial_s * 2.0 ** max(attempt - 1, 0), max_s)
    if retry_after is not None:
        return max(backoff, float(retry_after))
    return backoff
