"""The one pull cursor: a watermark on ``updated`` and the records delivered near it.

A source's cursor is qloop's own JSON, never a tool's page token (those
expire)::

    {"v": 1, "w": "2026-03-03T14:05:41.300+00:00", "seen": [["INC0012", 1772546741300], ...]}

``w`` is the greatest ``updated`` delivered so far. The next pull asks for
records updated at or after ``w − overlap`` (the tool's clock, its eventual
consistency and second-granular filters all need that margin) and skips the
``(key, updated ms)`` pairs in ``seen``: a record is neither skipped nor
delivered twice. ``seen`` keeps only the pairs inside the overlap window,
at most :data:`SEEN_CAP` of them (the newest); beyond it a record may be
delivered again, which the core's idempotent upsert makes harmless, but
never skipped. Instants are compared as aware UTC milliseconds, so a
source's zone never changes what is "after" the watermark.

A source whose ``updated`` is too coarse to tell two versions apart (GLPI's
one-second ``date_mod``) keeps a digest per seen key, ``"d": {key:
digest}``: a pair at the watermark's own instant is then seen only while
its digest is the same (the record may have changed again within that
instant); a pair below the watermark is settled.

A bare ISO instant (a hand-set cursor) is read as a watermark with nothing
seen, and so is the key ``updated`` in place of ``w`` (the cursors the
``jira_sm`` source stored before it moved onto the kit); ``seen`` as an
object ``{key: [epoch seconds, digest]}`` is the format the ``glpi`` source
stored before it moved onto the kit. So an upgrade resumes where it was
instead of pulling everything again. Anything else is a
:class:`StateError` naming where the cursor came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.errors import StateError

SEEN_CAP = 20_000
"""Most (key, updated) pairs a cursor keeps; the oldest go first."""


def to_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware instant (a naive one is refused)."""
    if at.tzinfo is None or at.utcoffset() is None:
        msg = f"naive instant {at.isoformat()} in a cursor: every instant needs its zone"
        raise StateError(msg)
    return int(at.astimezone(UTC).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass
class Cursor:
    """Progress of one stream: the highest ``updated`` and the pairs seen near it."""

    updated_ms: int | None = None
    seen: dict[str, int] = field(default_factory=dict)
    overlap_ms: int = 120_000
    digests: dict[str, str] = field(default_factory=dict)
    """Optional: a digest per seen key (``"d"`` in the JSON), for a tool whose ``updated``
    is too coarse to tell two versions apart (GLPI's one-second ``date_mod``)."""

    @classmethod
    def decode(cls, text: str | None, overlap_s: int, where: str) -> Cursor:
        """Read a stored cursor (None or empty: a first sync).

        Raises:
            StateError: the text is not a cursor of the kit (names ``where``).
        """
        mark = cls(overlap_ms=overlap_s * 1000)
        if not text:
            return mark
        body = text.strip()
        try:
            if not body.startswith("{"):
                mark.updated_ms = to_ms(datetime.fromisoformat(body.replace("Z", "+00:00")))
                return mark
            doc = json.loads(body)
            watermark = doc.get("w", doc.get("updated"))
            mark.updated_ms = (
                None if watermark is None else to_ms(datetime.fromisoformat(watermark))
            )
            seen = doc.get("seen") or []
            if isinstance(seen, dict):  # glpi's own format: {id: [epoch seconds, digest]}
                mark.seen = {str(k): int(v[0]) * 1000 for k, v in seen.items()}
                mark.digests = {str(k): str(v[1]) for k, v in seen.items()}
            else:
                mark.seen = {str(k): int(ms) for k, ms in seen}
                mark.digests = {str(k): str(d) for k, d in (doc.get("d") or {}).items()}
        except (ValueError, TypeError, AttributeError, IndexError, StateError) as exc:
            msg = f"{where}: the stored cursor is not a source cursor ({exc}): {text[:80]!r}"
            raise StateError(msg) from None
        return mark

    @classmethod
    def at(cls, instant: datetime, overlap_s: int) -> Cursor:
        """A watermark with nothing seen (the safe cursor of a backfill)."""
        return cls(updated_ms=to_ms(instant), overlap_ms=overlap_s * 1000)

    def copy(self) -> Cursor:
        return Cursor(self.updated_ms, dict(self.seen), self.overlap_ms, dict(self.digests))

    def since(self) -> datetime | None:
        """Lower bound of the next query: watermark − overlap (None: from the start)."""
        if self.updated_ms is None:
            return None
        return from_ms(self.updated_ms - self.overlap_ms)

    def is_seen(self, key: str, updated_ms: int, digest: str | None = None) -> bool:
        """Whether this version of ``key`` was delivered.

        With ``digest`` (a source whose ``updated`` is too coarse) a pair at
        the watermark's own instant is seen only when its kept digest is the same.
        """
        if self.seen.get(key) != updated_ms:
            return False
        return digest is None or updated_ms != self.updated_ms or self.digests.get(key) == digest

    def add(self, key: str, updated_ms: int, digest: str | None = None) -> None:
        """Record a delivered record (and its digest); the watermark only moves forward."""
        if self.updated_ms is None or updated_ms > self.updated_ms:
            self.updated_ms = updated_ms
        self.seen.pop(key, None)  # re-inserted last: the dict stays oldest-first
        self.seen[key] = updated_ms
        if digest is not None:
            self.digests[key] = digest
        if len(self.seen) > SEEN_CAP or next(iter(self.seen.values())) < self._low():
            self.seen = self._recent()
            if self.digests:
                self.digests = {k: d for k, d in self.digests.items() if k in self.seen}

    def _low(self) -> int:
        return (self.updated_ms or 0) - self.overlap_ms

    def _recent(self) -> dict[str, int]:
        """Pairs inside the overlap window, at most :data:`SEEN_CAP` (the newest)."""
        kept = sorted((ms, k) for k, ms in self.seen.items() if ms >= self._low())
        return {k: ms for ms, k in kept[-SEEN_CAP:]}

    def encode(self) -> str | None:
        if self.updated_ms is None:
            return None
        recent = self._recent()
        doc: dict[str, object] = {
            "v": 1,
            "w": from_ms(self.updated_ms).isoformat(timespec="milliseconds"),
            "seen": sorted([k, ms] for k, ms in recent.items()),
        }
        digests = {k: d for k, d in sorted(self.digests.items()) if k in recent}
        if digests:
            doc["d"] = digests
        return json.dumps(doc, separators=(",", ":"))
