"""A burst rate limiter for the fakes, as Atlassian documents Jira Cloud's.

From Jira Cloud's "Rate limiting" page (developer.atlassian.com):

* the burst limit is per tenant, per endpoint and per HTTP method (a token
  bucket: ``per_second`` tokens a second, up to ``burst``); API-token
  traffic is subject to it (the points quotas apply to apps only);
* a refused request gets **429** with ``Retry-After`` (seconds to wait
  before reissuing), ``X-RateLimit-Reset`` (request time plus that period,
  ISO 8601 ``yyyy-MM-ddTHH:mmZ``), ``RateLimit-Reason: jira-burst-based``,
  ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining``;
* "if you reissue the request before the retry period expires, the request
  will fail and return the same or longer Retry-After period": here every
  call to the blocked endpoint before the block ends is refused and
  restarts the block from its own arrival.

:attr:`BurstLimiter.random_rate` also refuses that share of the requests
at random (seeded), as a tenant under load does: each such 429 starts a
block like any other. Jira sends whole seconds; ``retry_after`` may be a
fraction so that tests of long storms stay short (the client reads both).
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.responses import JSONResponse, Response

_ID = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*-\d+|\d+)$")


def endpoint_of(path: str) -> str:
    """The endpoint a path belongs to: issue keys and ids become ``{id}``."""
    return "/".join("{id}" if _ID.match(part) else part for part in path.split("/"))


@dataclass
class _Bucket:
    tokens: float
    filled_at: float
    blocked_until: float = 0.0


@dataclass
class BurstLimiter:
    """Per (method, endpoint) token bucket with Jira's 429 block and its extension.

    Args:
        per_second: Tokens added a second (0: no bucket, only ``random_rate``).
        burst: Bucket size (requests allowed at once).
        retry_after: Seconds of the block a 429 starts (and restarts).
        random_rate: Share of the requests refused at random (0..1).
        seed: Seed of the random refusals.
        clock: Monotonic seconds (tests may pass their own).
    """

    per_second: float = 0.0
    burst: int = 10
    retry_after: float = 1.0
    random_rate: float = 0.0
    seed: str = "burst"
    clock: Callable[[], float] = time.monotonic
    served: int = 0
    refused: int = 0
    extended: int = 0
    """429s answered to calls made while their endpoint was blocked (each extends the block)."""
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def check(self, method: str, path: str) -> Response | None:
        """None when the request may proceed, else the 429 Jira would answer."""
        key = (method.upper(), endpoint_of(path))
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if self.per_second > 0:
                added = (now - bucket.filled_at) * self.per_second
                bucket.tokens = min(float(self.burst), bucket.tokens + added)
            bucket.filled_at = now
            if now < bucket.blocked_until:
                self.extended += 1
                return self._refuse(bucket, now)
            if self.per_second > 0 and bucket.tokens < 1.0:
                return self._refuse(bucket, now)
            if self.random_rate > 0 and self._rng.random() < self.random_rate:
                return self._refuse(bucket, now)
            if self.per_second > 0:
                bucket.tokens -= 1.0
            self.served += 1
            return None

    def blocked(self) -> list[str]:
        """The endpoints blocked right now (``METHOD /path``)."""
        with self._lock:
            now = self.clock()
            return [f"{m} {p}" for (m, p), b in self._buckets.items() if now < b.blocked_until]

    def _refuse(self, bucket: _Bucket, now: float) -> Response:
        self.refused += 1
        bucket.blocked_until = now + self.retry_after
        wait = self.retry_after
        text = str(math.ceil(wait)) if wait >= 1 or wait == int(wait) else f"{wait:.3f}"
        reset = datetime.now(UTC) + timedelta(seconds=wait)
        headers = {
            "Retry-After": text,
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
            "RateLimit-Reason": "jira-burst-based",
            "X-RateLimit-Limit": str(self.burst),
            "X-RateLimit-Remaining": "0",
        }
        body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
        return JSONResponse(body, status_code=429, headers=headers)
