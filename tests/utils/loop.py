"""Build a small sandbox deployment for loop tests: config file, fake clock, runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

import connectors  # noqa: F401  registers the sandbox types
from core.conf import load_config
from core.runtime import Runtime, open_runtime

AFTER_MONTH = datetime(2026, 11, 20, tzinfo=UTC)
TRACKING_FROM = "2026-10-01"
"""Tracking start of the test sources: the start of their month, which lies before the
fake clock (otherwise the first sync would start tracking after it, SPEC §11)."""


@dataclass
class FakeClock:
    now: datetime = AFTER_MONTH
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now = self.now + timedelta(**kwargs)

    def sleep(self, seconds: float) -> None:
        """Retries wait on the fake clock: tests never sleep for real."""
        self.slept.append(seconds)
        self.advance(seconds=int(seconds))


def sandbox_config(
    database_url: str,
    tmp_path: Path,
    *,
    incidents: int = 60,
    seed: str = "t",
    failure_rate: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a sandbox config for ``database_url`` into ``tmp_path``; returns its path."""
    doc: dict[str, Any] = {
        "database_url": database_url,
        "timezone": "Asia/Shanghai",
        "state_dir": str(tmp_path / "state"),
        "calendars": {
            "cn-office": {
                "timezone": "Asia/Shanghai",
                "hours": {"mon-fri": "09:00-12:00,13:00-18:00"},
                "holidays": {"country": "CN"},
            }
        },
        "sources": {
            "itsm": {
                "type": "sandbox",
                "seed": seed,
                "month": "2026-10",
                "incidents": incidents,
                "failure_rate": failure_rate,
                "page_size": 25,
                # the month lies before the fake clock's first sync (§11): track it all
                "tracking_from": TRACKING_FROM,
            }
        },
        "channels": {
            "phone": {
                "type": "sandbox",
                "role": "callback",
                "seed": seed,
                "failure_rate": failure_rate,
            },
            "survey-mail": {
                "type": "sandbox",
                "role": "survey",
                "contact": "email",
                "ascii_email_only": True,
                "seed": seed,
            },
            "survey-phone": {"type": "sandbox", "role": "survey", "contact": "phone", "seed": seed},
        },
        "policies": {
            "default": {
                "calendar": "cn-office",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "survey": {
                    "channels": ["survey-mail", "survey-phone"],
                    "sample": {"rate": 0.3, "stratify_by": ["customer", "service"], "seed": "s"},
                },
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
    }
    for key, value in (extra or {}).items():
        doc[key] = value
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def fixture_config(database_url: str, tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    """A config on the scripted ``fixture`` connectors (tests/utils/fixture_connectors.py)."""
    doc: dict[str, Any] = {
        "database_url": database_url,
        "timezone": "Asia/Shanghai",
        "state_dir": str(tmp_path / "state"),
        "calendars": {
            "cn": {
                "timezone": "Asia/Shanghai",
                "hours": {"mon-fri": "09:00-12:00,13:00-18:00"},
                "holidays": {"country": "CN"},
            }
        },
        "sources": {"itsm": {"type": "fixture", "tracking_from": TRACKING_FROM}},
        "channels": {
            "phone": {"type": "fixture", "role": "callback"},
            "survey": {"type": "fixture", "role": "survey", "contact": "phone"},
        },
        "policies": {
            "default": {
                "calendar": "cn",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "survey": {
                    "channels": ["survey"],
                    "sample": {"rate": 1.0, "stratify_by": ["customer"], "seed": "x"},
                },
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
    }
    doc.update(extra or {})
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Deployment:
    path: Path
    clock: FakeClock = field(default_factory=FakeClock)
    runtimes: list[Runtime] = field(default_factory=list)

    def open(self) -> Runtime:
        """A new runtime on the same database and state (as a second process would have)."""
        rt = open_runtime(load_config(self.path), clock=self.clock, sleep=self.clock.sleep)
        self.runtimes.append(rt)
        return rt

    def close(self) -> None:
        for rt in self.runtimes:
            rt.close()
