"""A small month for the report tests (clock 2026-11-20T00:00Z, Asia/Shanghai, CN calendar).

- R-1 (P3, ACME, Email): resolved Tue 10-13 15:00; reached on time (score 5).
- R-2 (P2, ACME, VPN): answered after 2 business hours (target 30 min) →
  response breach; resolved 10-14 15:00; reached on time (score 2 → low).
- R-3 (P3, Beta, Email): resolved 10-15 15:00; nobody reached → callback missed.
- R-4 (P3, Beta, VPN): waits for the customer 10-14 10:00 → 10-23 10:00,
  resolved 10-23 11:00: 3 business days (target) exceeded only with waiting
  counted; the ITSM says breached → an SLA disagreement caused by waiting.
- S-9 (P3, ACME, Email): September, resolved 09-28 15:00, reached on time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.records import Category as C
from tests.utils.fixture_connectors import WORLD, attempt, incident, register_fixture_types
from tests.utils.loop import Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")
PERIOD = "2026-10"
AS_OF = "2026-11-05T00:00:00+08:00"


def L(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def build_world() -> None:
    WORLD.reset()
    WORLD.incidents = [
        incident(
            "S-9",
            "P3",
            L(9, 28, 9),
            [(L(9, 28, 9), C.NEW), (L(9, 28, 9, 10), C.IN_PROGRESS), (L(9, 28, 15), C.RESOLVED)],
        ),
        incident(
            "R-1",
            "P3",
            L(10, 13, 9),
            [(L(10, 13, 9), C.NEW), (L(10, 13, 9, 10), C.IN_PROGRESS), (L(10, 13, 15), C.RESOLVED)],
        ),
        incident(
            "R-2",
            "P2",
            L(10, 14, 9),
            [(L(10, 14, 9), C.NEW), (L(10, 14, 11), C.IN_PROGRESS), (L(10, 14, 15), C.RESOLVED)],
            service="VPN",
        ),
        incident(
            "R-3",
            "P3",
            L(10, 15, 9),
            [(L(10, 15, 9), C.NEW), (L(10, 15, 9, 10), C.IN_PROGRESS), (L(10, 15, 15), C.RESOLVED)],
            customer="Beta",
        ),
        incident(
            "R-4",
            "P3",
            L(10, 14, 9),
            [
                (L(10, 14, 9), C.NEW),
                (L(10, 14, 9, 10), C.IN_PROGRESS),
                (L(10, 14, 10), C.WAITING),
                (L(10, 23, 10), C.IN_PROGRESS),
                (L(10, 23, 11), C.RESOLVED),
            ],
            customer="Beta",
            service="VPN",
            sla={"response_met": True, "resolution_met": False},
        ),
    ]
    WORLD.answers = {
        "S-9": [attempt(L(9, 29, 10), True, True, 5)],
        "R-1": [attempt(L(10, 14, 10), True, True, 5)],
        "R-2": [attempt(L(10, 15, 10), True, True, 2)],
        "R-4": [attempt(L(10, 23, 16), True, True, 4)],
    }


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    build_world()
    dep = Deployment(fixture_config(database_url, tmp_path))
    yield dep
    dep.close()
