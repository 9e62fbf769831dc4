"""The pull cursor: a watermark on ``updated`` and the issues already delivered near it.

The cursor is this connector's own JSON (never a Jira page token, which
expires)::

    {"v": 1, "updated": "2026-03-03T14:05:41.300+00:00",
     "seen": [["SUP-12", 1772546741300], ...]}

``updated`` is the greatest ``updated`` delivered so far; the next pull asks
for ``updated >= updated − overlap`` and skips the ``(key, updated ms)``
pairs in ``seen`` (those delivered inside the overlap window), so a record
is neither skipped nor delivered twice. ``seen`` is only an optimisation
(re-delivering is harmless, skipping is not), so it is capped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.errors import InputError

SEEN_CAP = 2000
"""Most (key, updated) pairs a cursor keeps; older ones are dropped first."""


def to_ms(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass
class Watermark:
    """Mutable progress of one stream: the highest ``updated`` and pairs seen near it."""

    updated_ms: int | None = None
    seen: dict[str, int] = field(default_factory=dict)
    overlap_ms: int = 120_000

    @classmethod
    def decode(cls, cursor: str | None, overlap_s: int, where: str) -> Watermark:
        """Parse a stored cursor (None: a first sync).

        Raises:
            InputError: the cursor is not this connector's (names ``where``).
        """
        mark = cls(overlap_ms=overlap_s * 1000)
        if cursor is None:
            return mark
        try:
            doc = json.loads(cursor)
            mark.updated_ms = (
                None
                if doc.get("updated") is None
                else to_ms(datetime.fromisoformat(doc["updated"]))
            )
            mark.seen = {str(k): int(ms) for k, ms in doc.get("seen", [])}
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            msg = f"{where}: stored cursor is not a jira_sm cursor ({exc}): {cursor[:80]!r}"
            raise InputError(msg, field="cursor") from None
        return mark

    def since(self) -> datetime | None:
        """Lower bound of the next query: watermark − overlap (None: from the start)."""
        if self.updated_ms is None:
            return None
        return from_ms(self.updated_ms - self.overlap_ms)

    def is_seen(self, key: str, updated_ms: int) -> bool:
        return self.seen.get(key) == updated_ms

    def add(self, key: str, updated_ms: int) -> None:
        """Record a delivered issue; the watermark only moves forward."""
        if self.updated_ms is None or updated_ms > self.updated_ms:
            self.updated_ms = updated_ms
        self.seen[key] = updated_ms
        self._prune()

    def _prune(self) -> None:
        if self.updated_ms is None or not self.seen:
            return
        low = self.updated_ms - self.overlap_ms
        if len(self.seen) > SEEN_CAP or next(iter(self.seen.values())) < low:
            self.seen = self._recent()

    def _recent(self) -> dict[str, int]:
        """Pairs inside the overlap window, at most :data:`SEEN_CAP` (the newest)."""
        low = (self.updated_ms or 0) - self.overlap_ms
        kept = sorted(((ms, k) for k, ms in self.seen.items() if ms >= low), reverse=True)
        return {k: ms for ms, k in reversed(kept[:SEEN_CAP])}

    def encode(self) -> str | None:
        if self.updated_ms is None:
            return None
        doc = {
            "v": 1,
            "updated": from_ms(self.updated_ms).isoformat(timespec="milliseconds"),
            "seen": sorted([k, ms] for k, ms in self._recent().items()),
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def at(cls, instant: datetime, overlap_s: int) -> Watermark:
        """A watermark with nothing seen (the safe cursor of a backfill)."""
        return cls(updated_ms=to_ms(instant), overlap_ms=overlap_s * 1000)
