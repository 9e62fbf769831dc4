"""The QA web page's languages: labels from ``messages.yaml``, zh-CN and en.

Every label a template shows is a key of the catalogue; :func:`catalogue`
checks at load that each key has every language, so a missing translation
fails at start-up, not in front of a user.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import yaml

from core.conf import AppConfig
from core.errors import ConfigError

LANGUAGES = ("zh-CN", "en")
CATALOGUE = Path(__file__).with_name("messages.yaml")


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """Key → language → label; every key has every language of :data:`LANGUAGES`."""
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    missing = [
        f"{key}: {lang}"
        for key, labels in data.items()
        for lang in LANGUAGES
        if not isinstance(labels, dict) or not labels.get(lang)
    ]
    if missing:
        msg = f"{CATALOGUE}: labels missing: {', '.join(missing)}"
        raise ConfigError(msg)
    return {str(k): {str(lang): str(text) for lang, text in v.items()} for k, v in data.items()}


def translator(lang: str) -> Callable[[str], str]:
    """``t(key)``: the label of ``key`` in ``lang``; an unknown key is an error."""
    labels = catalogue()

    def t(key: str) -> str:
        try:
            return labels[key][lang]
        except KeyError:
            msg = f"{CATALOGUE}: no label {key!r} for {lang}"
            raise ConfigError(msg) from None

    return t


def default_language(cfg: AppConfig) -> str:
    """zh-CN when a calendar keeps China's holidays, else en."""
    if any(cal.country == "CN" for cal in cfg.calendars.values()):
        return "zh-CN"
    return "en"


def pick(requested: str | None, fallback: str) -> str:
    """``requested`` when it is a known language, else ``fallback``."""
    return requested if requested in LANGUAGES else fallback
