"""A sandbox month through the loop with webhook channels against the fake call centre.

Each callback task and survey invitation reaches the call centre exactly
once; the outcomes it posts back go through ``receive`` +
``accept_outcomes``, and reconcile matches each or queues it for review;
delivering them all again changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

import connectors.webhook  # noqa: F401  registers the webhook type
from core.conf import load_config
from core.loop import reconcile, run_once
from core.loop.collect import accept_outcomes
from core.runtime import Runtime
from core.store.models import Match, OutboxItem, Response
from tests.fakes.callcentre import CallCentre
from tests.fakes.server import serve
from tests.utils.loop import Deployment, FakeClock, sandbox_config

SECRET = "whsec_" + base64.b64encode(b"q" * 32).decode()
INBOUND = "whsec_" + base64.b64encode(b"c" * 32).decode()


def webhook_config(database_url: str, tmp_path: Path, base: str, incidents: int = 50) -> Path:
    """The sandbox deployment with both roles on webhook channels at ``base``."""
    path = sandbox_config(database_url, tmp_path, incidents=incidents)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    common = {"type": "webhook", "url": f"{base}/tasks", "signing_secret": SECRET,
              "inbound_secret": INBOUND}  # fmt: skip
    doc["channels"] = {
        "phone": {**common, "kinds": ["callback"]},
        "survey-cc": {**common, "kinds": ["survey"], "contact": "any"},
    }
    doc["policies"]["default"]["survey"]["channels"] = ["survey-cc"]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class World:
    dep: Deployment
    cc: CallCentre
    rt: Runtime


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    cc = CallCentre(task_secret=SECRET, outcome_secret=INBOUND, clock=clock)
    with serve(cc.app()) as base:
        dep = Deployment(webhook_config(database_url, tmp_path, base), clock=clock)
        try:
            yield World(dep, cc, dep.open())
        finally:
            dep.close()


def _count(rt: Runtime, model: Any, *where: Any) -> int:
    with rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _post_back(w: World) -> tuple[int, int]:
    """Every outcome as its own signed delivery to its channel; returns (created, duplicates)."""
    created = duplicates = 0
    for outcome in list(w.cc.outcomes):
        name = "phone" if outcome["kind"] == "callback_attempt" else "survey-cc"
        headers, body = w.cc.signed_outcome(outcome)
        receiver = w.rt.channel(name)
        outcomes = receiver.receive(headers, body, f"https://qloop.test/hooks/{name}")  # type: ignore[attr-defined]
        result = accept_outcomes(w.rt, name, outcomes)
        created += result.counts["created"]
        duplicates += result.counts["duplicates"]
    return created, duplicates


def test_the_config_validates_and_masks_the_secrets(world: World) -> None:
    cfg = load_config(world.dep.path)
    shown = yaml.safe_dump(cfg.masked())
    assert SECRET not in shown and INBOUND not in shown
    assert cfg.channels["phone"].type == "webhook"


def test_a_month_with_webhook_channels_sends_once_and_matches_every_answer(world: World) -> None:
    rt, cc = world.rt, world.cc
    for _ in range(2):
        assert run_once(rt).errors == []
    with rt.db.session() as s:
        items = list(
            s.scalars(select(OutboxItem).where(OutboxItem.kind.in_(["callback", "survey"])))
        )
        planned = {i.idempotency_key: (i.kind, i.state, i.provider_ref) for i in items}
    kinds = {kind for kind, _, _ in planned.values()}
    assert kinds == {"callback", "survey"}
    assert {state for _, state, _ in planned.values()} == {"sent"}
    # each task / invitation exactly once at the call centre, with the reference it gave
    assert cc.keys_received() == dict.fromkeys(planned, 1)
    assert cc.resends == 0 and cc.rejected == []
    refs = {t.payload["idempotency_key"]: t.ref for t in cc.tasks.values()}
    assert {k: ref for k, (_, _, ref) in planned.items()} == refs

    created, duplicates = _post_back(world)
    assert created == len(cc.outcomes) > 0 and duplicates == 0
    result = reconcile(rt)
    assert _count(rt, Response) == _count(rt, Match) == len(cc.outcomes)
    assert _count(rt, Response, Response.matched.is_(False)) == 0
    with rt.db.session() as s:
        methods = dict(s.execute(select(Match.method, func.count()).group_by(Match.method)).all())
        statuses = {st for (st,) in s.execute(select(Match.status).distinct())}
    assert statuses <= {"matched", "review"}
    assert methods.get("token", 0) > 0
    assert result.counts["matched_token"] + result.counts["matched_provider_ref"] + result.counts[
        "matched_contact"
    ] + result.counts["review"] == len(cc.outcomes)
    stripped = [o for o in cc.outcomes if not o["correlation_token"] and o["provider_ref"]]
    assert result.counts["matched_provider_ref"] == len(stripped)

    # the same deliveries again: nothing new stored, nothing re-matched
    matches = _count(rt, Match)
    created, duplicates = _post_back(world)
    assert (created, duplicates) == (0, len(cc.outcomes))
    assert reconcile(rt).counts == {}
    assert _count(rt, Response) == _count(rt, Match) == matches
    # and a further loop sends nothing new
    assert run_once(rt).errors == []
    assert cc.keys_received() == dict.fromkeys(planned, 1)
