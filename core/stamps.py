"""Version stamps kept on every compliance record (issue 10 item 8).

A verdict depends on qloop's rules and on the ``holidays`` package's data
(which dates are public holidays, which weekend days are worked). Both
versions are stamped on every compliance record, so a recompute that changes
a verdict after an upgrade can say which of them changed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _pyproject_version(path: Path = _PYPROJECT) -> str | None:
    """``[project] version`` of a source checkout's pyproject.toml, None without one."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    version = data.get("project", {}).get("version")
    return str(version) if version else None


@cache
def qloop_version() -> str:
    """The installed qloop's version, else the checkout's pyproject, else ``unknown``."""
    return _installed("qloop") or _pyproject_version() or UNKNOWN


@cache
def holidays_version() -> str:
    """The version of the ``holidays`` package that decides public holidays."""
    return _installed("holidays") or UNKNOWN


@dataclass(frozen=True)
class Stamps:
    """The versions a verdict was computed with."""

    qloop: str | None
    holidays: str | None

    @classmethod
    def current(cls) -> Stamps:
        """The running qloop's and holidays' versions (40 characters at most, as stored)."""
        return cls(qloop_version()[:40], holidays_version()[:40])

    def changes_from(self, old: Stamps) -> str:
        """What changed from ``old`` to these, e.g. ``holidays 0.58 → 0.60`` ('' when none)."""
        parts = [
            f"{name} {before or UNKNOWN} → {after or UNKNOWN}"
            for name, before, after in (
                ("qloop", old.qloop, self.qloop),
                ("holidays", old.holidays, self.holidays),
            )
            if before != after
        ]
        return ", ".join(parts)
