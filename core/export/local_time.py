"""Stored instants as the export shows them: ISO 8601 in the display zone, fast.

An export of a big month shows five or six instants per row. Converting
each with ``astimezone(zone).isoformat()`` (:func:`core.timeutil.local_iso`)
costs a zone lookup and a datetime per value; :class:`LocalIso` gives the
same text from SQLite's stored text (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC)
with one lookup per hour of UTC time: within an hour that no zone
transition crosses, the local text is the hour's local prefix, the stored
minutes and seconds (and microseconds, when not zero) and the hour's
offset. Zones whose offset is not a whole number of hours (+05:30) are
looked up per minute the same way. An hour or minute that a transition
crosses, an offset with seconds (local mean times before the 20th century)
and any other value (an aware datetime, as PostgreSQL returns) take the
exact way, ``local_iso``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo

from core.timeutil import local_iso

_HOUR = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)
_CACHE_LIMIT = 100_000
"""Hours or minutes kept (a month has 744 hours, 44,640 minutes); emptied when it holds more."""
_EXACT = ("", "")
"""A period that a transition crosses: each value takes the exact way."""


def _parse_stored(text: str) -> datetime:
    """A stored text read back as core.store.types reads it: aware UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored_form(text: str) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS+00:00`` (UTC, whole seconds) as SQLite stores it; else None."""
    if (
        len(text) == 25
        and text[10] == "T"
        and text[19:] == "+00:00"
        and text[14:16].isdigit()
        and text[17:19].isdigit()
    ):
        return f"{text[:10]} {text[11:19]}.000000"
    return None


class LocalIso:
    """Formats instants of one display zone exactly as ``local_iso`` does (see module doc)."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._periods: dict[str, tuple[str, str]] = {}
        """UTC ``YYYY-MM-DD HH`` (or ``… HH:MM``) → (its local text up to there, offset text)."""
        self.by_minute = False
        """The zone has an offset that is not whole hours: minutes are the period."""

    def _period(self, key: str) -> tuple[str, str]:
        """(local text of the period's start up to its length, offset text), or :data:`_EXACT`."""
        minute = len(key) == 16
        start = datetime.fromisoformat(key + (":00" if minute else ":00:00")).replace(tzinfo=UTC)
        local = start.astimezone(self.tz)
        offset = local.utcoffset()
        last = start + (_MINUTE if minute else _HOUR) - timedelta(microseconds=1)
        if offset is None or offset % _MINUTE or last.astimezone(self.tz).utcoffset() != offset:
            found = _EXACT
        elif not minute and offset % _HOUR:
            self.by_minute = True  # local minutes are not the UTC ones: look up minutes
            self._periods.clear()
            return _EXACT
        else:
            text = local.isoformat()  # YYYY-MM-DDTHH:MM:00+HH:MM
            found = (text[:16] if minute else text[:13], text[19:])
        if len(self._periods) >= _CACHE_LIMIT:
            self._periods.clear()
        self._periods[key] = found
        return found

    def iso_text(self, text: str) -> str | None:
        """An ISO 8601 instant with its offset (``…T08:03:07+00:00``, as JSON holds them), local.

        The same as ``local_iso(datetime.fromisoformat(text), zone)``; a UTC
        instant of whole seconds goes the stored text's way.
        """
        stored = stored_form(text)
        if stored is not None:
            return self(stored)
        return local_iso(datetime.fromisoformat(text), self.tz)

    def __call__(self, value: str | datetime | None) -> str | None:
        """``value`` (SQLite's stored text or an aware datetime) as local ISO 8601, or None."""
        if value is None:
            return None
        if not isinstance(value, str):
            return local_iso(value, self.tz)
        # the stored form (inline: this runs for every instant of a big export)
        if not (len(value) == 26 and value[10] == " " and value[16] == ":" and value[19] == "."):
            return local_iso(_parse_stored(value), self.tz)
        cut = 16 if self.by_minute else 13
        key = value[:cut]
        prefix, offset = self._periods.get(key) or self._period(key)
        if not prefix:
            return local_iso(_parse_stored(value), self.tz)
        micro = value[19:]
        return prefix + value[cut:19] + ("" if micro == ".000000" else micro) + offset

    def column(self, values: Sequence[str | datetime | None]) -> list[str | None]:
        """Each value as :meth:`__call__` gives it, a column at a time.

        A column of one value (the evaluation instant of a month evaluated
        in one run) is formatted once. Otherwise the stored form's fast way
        is written out in the loop (no call per value); anything else goes
        through :meth:`__call__`.
        """
        n = len(values)
        if n > 1:
            first = values[0]
            if type(first) is str and first == values[-1] and values.count(first) == n:
                return [self(first)] * n
        periods = self._periods
        out: list[str | None] = []
        append = out.append
        for value in values:
            if (
                type(value) is str
                and len(value) == 26
                and value[10] == " "
                and value[16] == ":"
                and value[19] == "."
            ):
                cut = 16 if self.by_minute else 13
                key = value[:cut]
                found = periods.get(key) or self._period(key)
                if found[0]:
                    micro = value[19:]
                    append(
                        found[0] + value[cut:19] + ("" if micro == ".000000" else micro) + found[1]
                    )
                    continue
            append(self(value))
        return out
