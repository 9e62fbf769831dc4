"""A zip written entry by entry into a stream, reproducibly, with a SHA-256 per entry.

The zip goes to a sink that cannot seek, so :mod:`zipfile` writes each
entry's sizes after its data (data descriptors) and nothing has to be held
back: the bytes are handed on as soon as they are compressed. Every entry
gets the same timestamp (given by the caller), the same permissions and
ZIP64 headers, so the same entries give the same bytes.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)
"""The earliest instant a zip timestamp can hold."""


class _Sink:
    """A write-only, non-seekable file object whose bytes are taken out by :meth:`drain`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def drain(self) -> Iterator[bytes]:
        parts, self._parts = self._parts, []
        if parts:
            yield b"".join(parts)


@dataclass
class Digests:
    """SHA-256 and size of every entry written, by name."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)


def zip_time(instant: datetime) -> tuple[int, int, int, int, int, int]:
    """The zip timestamp (UTC, even seconds) of ``instant``; 1980-01-01 at the earliest."""
    at = max(instant.astimezone(UTC), ZIP_EPOCH)
    return (at.year, at.month, at.day, at.hour, at.minute, at.second - at.second % 2)


def zip_chunks(
    entries: Iterable[tuple[str, Iterable[bytes]]],
    *,
    stamp: datetime,
    digests: Digests,
) -> Iterator[bytes]:
    """The bytes of a zip of ``entries`` (name, chunks), in the order given.

    ``digests`` is filled as the entries are written, so a last entry (a
    manifest) can be produced from it by a lazy iterable.
    """
    sink = _Sink()
    when = zip_time(stamp)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[call-overload]
        for name, chunks in entries:
            if name in digests.files:
                msg = f"duplicate entry {name!r} in the pack"
                raise ValueError(msg)
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            info.external_attr = 0o100644 << 16
            digest = hashlib.sha256()
            size = 0
            with zf.open(info, "w", force_zip64=True) as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    yield from sink.drain()
            digests.files[name] = (digest.hexdigest(), size)
            yield from sink.drain()
    yield from sink.drain()
