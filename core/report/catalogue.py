"""The message catalogue of the report (``locale/<lang>.yaml``) and locale formatting (Babel).

Every label a report shows comes from the catalogue; numbers, percentages
and dates are formatted for the language by Babel. A missing key is an
error naming the key and the language (never a silent English fallback).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent

from core.errors import ConfigError
from core.report.model import check_lang


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


@cache
def messages(lang: str) -> dict[str, str]:
    """The catalogue of ``lang`` as dotted key → text.

    ``locale/<lang>.yaml`` holds the monthly report's labels; each other
    document adds its own file ``locale/<document>.<lang>.yaml`` (campaign
    results, complaint report, review pack…). A key defined twice is an error.
    """
    check_lang(lang)
    folder = resources.files("core.report").joinpath("locale")
    names = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name == f"{lang}.yaml" or entry.name.endswith(f".{lang}.yaml")
    )
    out: dict[str, str] = {}
    for name in names:
        part = _flatten(yaml.safe_load(folder.joinpath(name).read_text("utf-8")) or {})
        twice = sorted(set(part) & set(out))
        if twice:
            msg = f"report catalogue {lang}: {name} defines {twice[0]!r} again"
            raise ConfigError(msg)
        out.update(part)
    return out


class Labels:
    """Labels and formats for one language."""

    def __init__(self, lang: str, timezone: str) -> None:
        self.lang = lang
        self.msgs = messages(lang)
        self.locale = Locale.parse(lang.replace("-", "_"))
        self.tz = ZoneInfo(timezone)
        self._instants: dict[datetime | str, str] = {}
        """Instants already formatted (a month's report shows many, often the same)."""

    def __call__(self, key: str, **values: Any) -> str:
        """The label ``key``, with ``{name}`` fields filled from ``values``."""
        try:
            text = self.msgs[key]
        except KeyError:
            msg = f"report catalogue {self.lang}: no label {key!r}"
            raise ConfigError(msg) from None
        return text.format(**values) if values else text

    def maybe(self, key: str, fallback: str) -> str:
        """The label ``key`` when the catalogue has it (rules or causes not known), else as is."""
        return self.msgs.get(key, fallback)

    def rate(self, value: float | None) -> str:
        """A rate as a percentage with one decimal (``—`` when undefined)."""
        if value is None:
            return self("none")
        return format_percent(value, "#,##0.0%", locale=self.locale)

    def number(self, value: float | int | None, decimals: int = 0) -> str:
        """A number with the locale's separators (``—`` when None)."""
        if value is None:
            return self("none")
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return format_decimal(value, pattern, locale=self.locale)

    def instant(self, value: datetime | str | None) -> str:
        """An instant in the display zone, the locale's medium date and time."""
        if value is None:
            return self("none")
        text = self._instants.get(value)
        if text is None:
            when = datetime.fromisoformat(value) if isinstance(value, str) else value
            text = format_datetime(when, "medium", tzinfo=self.tz, locale=self.locale)
            text = text.replace("\u202f", " ")  # CLDR's narrow space: not every font has it
            self._instants[value] = text
        return text

    def duration(self, seconds: int | None) -> str:
        """Seconds as hours with one decimal, e.g. ``12.5 h`` (``—`` when None)."""
        if seconds is None:
            return self("none")
        return f"{self.number(seconds / 3600, 1)} {self('unit_hours')}"

    def yes_no(self, value: bool | None) -> str:
        if value is None:
            return self("none")
        return self("yes") if value else self("no")
