"""Jinja2 rendering of the QA web page: autoescaped templates, labels from the catalogue."""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.web import i18n

TEMPLATES = Path(__file__).with_name("templates")


def percent(rate: float | None) -> str:
    """``0.875`` → ``87.5%``; None (nothing counted) → ``–``."""
    return "–" if rate is None else f"{rate * 100:.1f}%"


def local_time(value: datetime | None, tz: tzinfo) -> str:
    """An instant in the display zone, to the minute."""
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


class Renderer:
    """Renders the page's templates with ``t`` (labels) for the visitor's language."""

    def __init__(self, *, timezone: str, version: str) -> None:
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["percent"] = percent
        self._env.filters["local"] = local_time
        self._globals = {"timezone": timezone, "version": version, "languages": i18n.LANGUAGES}

    def render(self, template: str, *, lang: str, **values: Any) -> str:
        t = i18n.translator(lang)
        return self._env.get_template(template).render(
            t=t,
            lang=lang,
            lang_name=lambda code: i18n.translator(code)("lang_name"),
            **self._globals,
            **values,
        )
