"""GLPI's values as qloop needs them: naive server-local times and HTML-encoded text.

GLPI stores and returns datetimes as naive ``YYYY-MM-DD HH:MM:SS`` strings in
the server's (or session's) time zone, and its search criteria compare them
as such. :class:`ServerClock` converts both ways, DST-safe:

* naive → UTC picks the first reading of an ambiguous time (the hour repeated
  when DST ends) unless told that the instant cannot be earlier than a known
  one (``not_before``), which a later log entry of the same ticket gives;
* a UTC lower bound → a naive criterion value that is low enough for every
  instant after it, even across the DST end (where naive time goes back).

GLPI ≤ 10 returns text with HTML entities (``&lt;p&gt;``, ``&#039;``);
GLPI 11 returns it raw. :func:`decode_text` handles both.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from connectors.kit.text import html_text
from core.errors import InputError

NAIVE_FORMAT = "%Y-%m-%d %H:%M:%S"
DST_PAD = timedelta(hours=3)
"""Longer than any UTC-offset change, so bounds computed over it cover a transition."""


def decode_text(value: object) -> str | None:
    """Text with HTML entities decoded (GLPI ≤ 10 encodes them; decoding raw text is harmless)."""
    if value is None:
        return None
    text = str(value)
    if "&" not in text:
        return text
    return html.unescape(text)


def html_to_text(value: object) -> str | None:
    """Decoded HTML content as plain text (paragraphs on their own lines)."""
    text = decode_text(value)
    if text is None:
        return None
    return html_text(text)


class ServerClock:
    """Conversions between GLPI's naive server-local times and aware UTC."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def parse(self, text: object, *, not_before: datetime | None = None) -> datetime | None:
        """A naive GLPI datetime as aware UTC (None for empty values and GLPI's zero date).

        Args:
            text: ``YYYY-MM-DD HH:MM:SS`` (or ``YYYY-MM-DD HH:MM``), naive.
            not_before: An instant the value cannot precede; during the
                repeated hour the later reading is taken when the earlier
                one would precede it.

        Raises:
            InputError: the value is not a GLPI datetime.
        """
        if text in (None, "", "NULL") or str(text).startswith("0000-00-00"):
            return None
        raw = str(text).strip()
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            msg = f"not a GLPI datetime: {raw!r}"
            raise InputError(msg) from None
        if naive.tzinfo is not None:  # already aware (a GLPI 11 or patched server)
            return naive.astimezone(UTC).replace(microsecond=0)
        first = naive.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if not_before is not None and first < not_before:
            second = naive.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
            if second >= not_before:
                return second.replace(microsecond=0)
        return first.replace(microsecond=0)

    def parse_late(self, text: object) -> datetime | None:
        """The latest UTC reading of a naive datetime (the second one in the repeated hour)."""
        if text in (None, "") or str(text).startswith("0000-00-00"):
            return None
        naive = datetime.fromisoformat(str(text).strip())
        if naive.tzinfo is not None:
            return naive.astimezone(UTC)
        return naive.replace(tzinfo=self.tz, fold=1).astimezone(UTC)

    def naive(self, instant: datetime) -> str:
        """An aware instant as GLPI writes it in the server's zone."""
        return instant.astimezone(self.tz).strftime(NAIVE_FORMAT)

    def lower_bound(self, since: datetime) -> str:
        """A naive value at or below the local time of every instant at or after ``since``.

        Naive local time is ``t + offset(t)``; it can only fall when the offset
        falls (DST end), by at most the drop, so the smallest offset over
        ``[since, since + DST_PAD]`` gives a safe bound.
        """
        offset = min(self._offset(since), self._offset(since + DST_PAD))
        return (since.astimezone(UTC).replace(tzinfo=None) + offset).strftime(NAIVE_FORMAT)

    def upper_bound(self, until: datetime) -> str:
        """A naive value at or above the local time of every instant before ``until``."""
        offset = max(self._offset(until), self._offset(until - DST_PAD))
        return (until.astimezone(UTC).replace(tzinfo=None) + offset).strftime(NAIVE_FORMAT)

    def _offset(self, instant: datetime) -> timedelta:
        return instant.astimezone(self.tz).utcoffset() or timedelta(0)


def shift_naive(text: str, seconds: int) -> str:
    """A naive GLPI datetime moved by ``seconds`` (naive arithmetic, for criteria values)."""
    return (datetime.strptime(text, NAIVE_FORMAT) + timedelta(seconds=seconds)).strftime(
        NAIVE_FORMAT
    )
