"""The report's data: plain JSON-able values, the same for every format and language."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import InputError

FORMATS = ("json", "html", "xlsx", "pdf")
"""The formats :func:`core.report.render_report` writes."""
LANGS = ("zh-CN", "en")
"""The languages of the message catalogue."""

MEDIA_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


@dataclass(frozen=True)
class Report:
    """One month's quality report as of an instant.

    Attributes:
        period: ``YYYY-MM``.
        as_of: The evaluation instant (UTC, whole seconds).
        scope: The policy reported on, or ``all``.
        default_lang: ``zh-CN`` when a policy calendar's country is CN, else ``en``.
        timezone: The display zone (configuration's ``timezone``).
        data: Everything the documents show, as JSON-able values.
    """

    period: str
    as_of: datetime
    scope: str
    default_lang: str
    timezone: str
    data: dict[str, Any]

    @property
    def basename(self) -> str:
        """File name stem: ``qloop-report-<period>-<scope>``."""
        return f"qloop-report-{self.period}-{self.scope}"


def check_format(fmt: str) -> None:
    """Raises InputError naming ``format`` when ``fmt`` is not a report format."""
    if fmt not in FORMATS:
        msg = f"format: unknown report format {fmt!r}; valid: {', '.join(FORMATS)}"
        raise InputError(msg, field="format")


def check_lang(lang: str) -> None:
    """Raises InputError naming ``lang`` when ``lang`` has no catalogue."""
    if lang not in LANGS:
        msg = f"lang: unknown report language {lang!r}; valid: {', '.join(LANGS)}"
        raise InputError(msg, field="lang")
