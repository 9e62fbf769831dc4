"""Survey top-up draws (SPEC §10 "Survey sampling"; issue 9 item 9).

A month's sample is drawn once it has ended. A second source added after
that draw brings more of the month's resolutions: a top-up draw over those
newcomers only, with the same rule (round half up of rate × size per
stratum, at least one), so every resolution is considered exactly once.

Rate 0.3, strata by customer.
- First source, drawn first: ACME ×5 → 1.5 → 2; BETA ×2 → 0.6 → 1. 7 considered, 3 picked.
- Second source, later, holding the first's incidents (its own copies) and
  nine more: ACME ×8 → 2.4 → 2; BETA ×3 → 0.9 → 1; GAMMA ×5 → 1.5 → 2.
  16 considered, 5 picked.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from core.loop import run_once
from core.loop.sample import draw_seed
from core.records import Category as C
from core.store.models import Incident, SampleRun, SurveyInvitation
from tests.utils.fixture_connectors import WORLD, incident, register_fixture_types
from tests.utils.loop import TRACKING_FROM, Deployment, fixture_config

SH = ZoneInfo("Asia/Shanghai")


def _resolved(n: int, customer: str, day: int) -> Any:
    created = datetime(2026, 10, day, 9, tzinfo=SH)
    history = [
        (created, C.NEW),
        (created + timedelta(minutes=5), C.IN_PROGRESS),
        (created + timedelta(hours=2), C.RESOLVED),
    ]
    return incident(f"T-{n}", "P3", created, history, customer=customer)


FIRST = [_resolved(i, "ACME", 20 + i) for i in range(1, 6)] + [
    _resolved(6, "BETA", 27),
    _resolved(7, "BETA", 28),
]
LATER = (
    [_resolved(10 + i, "ACME", 12 + i) for i in range(3)]
    + [_resolved(20, "BETA", 15)]
    + [_resolved(30 + i, "GAMMA", 12 + i) for i in range(5)]
)


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    register_fixture_types()
    WORLD.reset()
    WORLD.incidents = list(FIRST)
    path = fixture_config(database_url, tmp_path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["policies"]["default"]["survey"]["sample"]["rate"] = 0.3
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    dep = Deployment(path)
    yield dep
    dep.close()


def _add_second_source(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["sources"]["itsm2"] = {"type": "fixture", "tracking_from": TRACKING_FROM}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _second_source_arrives(deployment: Deployment) -> Any:
    """A second source holding the LATER incidents is configured; an hour on, the loop runs."""
    WORLD.incidents = list(FIRST) + list(LATER)
    _add_second_source(deployment.path)
    deployment.clock.advance(hours=1)
    rt2 = deployment.open()
    run_once(rt2)
    return rt2


def _strata(run: SampleRun) -> dict[str, tuple[int, int]]:
    return {"/".join(st["stratum"]): (st["size"], st["picked"]) for st in run.strata}


def test_second_source_after_the_draw_gets_a_top_up(deployment: Deployment) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        [first] = s.scalars(select(SampleRun)).all()
        assert (first.month, first.draw, first.population, first.picked) == ("2026-10", 0, 7, 3)
        assert _strata(first) == {"ACME": (5, 2), "BETA": (2, 1)}
    run_once(rt)  # nothing new: no second draw
    with rt.db.session() as s:
        assert len(s.scalars(select(SampleRun)).all()) == 1

    # a second source arrives, holding more October resolutions (older than the first's cursor)
    rt2 = _second_source_arrives(deployment)
    with rt2.db.session() as s:
        runs = s.scalars(select(SampleRun).order_by(SampleRun.draw)).all()
        assert [(r.draw, r.population, r.picked) for r in runs] == [(0, 7, 3), (1, 16, 5)]
        top = runs[1]
        assert top.seed == draw_seed("x", 1) == "x/topup-1"
        assert _strata(top) == {"ACME": (8, 2), "BETA": (3, 1), "GAMMA": (5, 2)}
        source_of = dict(s.execute(select(Incident.id, Incident.source)).all())
        members = [[m for st in r.strata for m in st["members"]] for r in runs]
        # every resolution considered exactly once: the first source's by draw 0, the second's by 1
        assert {source_of[m] for m in members[0]} == {"itsm"}
        assert {source_of[m] for m in members[1]} == {"itsm2"}
        assert len(members[0]) + len(members[1]) == len(set(members[0]) | set(members[1])) == 23
        invitations = s.scalars(select(SurveyInvitation)).all()
        by_run: dict[int, int] = {}
        for inv in invitations:
            by_run[inv.sample_run_id or 0] = by_run.get(inv.sample_run_id or 0, 0) + 1
        assert by_run == {runs[0].id: 3, runs[1].id: 5}
        assert all(
            source_of[i.incident_id] == "itsm2" for i in invitations if i.sample_run_id == top.id
        )

    deployment.clock.advance(hours=1)
    run_once(rt2)  # considered once: no third draw, no new invitation
    with rt2.db.session() as s:
        assert len(s.scalars(select(SampleRun)).all()) == 2
        assert len(s.scalars(select(SurveyInvitation)).all()) == 8


def test_a_draw_stored_before_members_counts_what_was_stored_by_then(
    deployment: Deployment,
) -> None:
    """A first draw without ``members`` considered the incidents stored (ingested) before it."""
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        [first] = s.scalars(select(SampleRun)).all()
        first.strata = [{k: v for k, v in st.items() if k != "members"} for st in first.strata]
        s.commit()
    rt2 = _second_source_arrives(deployment)
    with rt2.db.session() as s:
        runs = s.scalars(select(SampleRun).order_by(SampleRun.draw)).all()
        assert [(r.draw, r.population, r.picked) for r in runs] == [(0, 7, 3), (1, 16, 5)]
        assert "members" not in runs[0].strata[0]
        source_of = dict(s.execute(select(Incident.id, Incident.source)).all())
        assert {source_of[m] for st in runs[1].strata for m in st["members"]} == {"itsm2"}
