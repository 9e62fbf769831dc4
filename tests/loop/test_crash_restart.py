"""Killing ``qloop run`` at any point and starting it again loses and duplicates nothing.

The real loop runs as a subprocess (``qloop run``) on SQLite with the
sandbox ITSM and two webhook channels pointed at the fake call centre,
which runs in this test process. The process is killed with SIGKILL
several times: inside a task delivery (the call centre has stored the task,
the reply never arrives, so the outbox item is left in doubt) and after
random delays. Then it runs to completion. The call centre must hold every
planned callback task and survey invitation exactly once (raw deliveries
may repeat: resends of in-doubt items, deduplicated by webhook-id), every
outbox item must be sent, and the store must hold what an uninterrupted
run of the same seed holds.

Between rounds the claims of in-doubt items are aged past
:data:`core.loop.push.CLAIM_LEASE_S`, which stands for the operator
waiting five minutes before restarting.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.loop.push import CLAIM_LEASE_S
from core.store.models import (
    CallbackTask,
    ComplianceRecord,
    Incident,
    Match,
    Nonconformity,
    OutboxItem,
    Response,
    SampleRun,
    StatusEvent,
    SurveyInvitation,
)
from core.timeutil import as_utc
from tests.fakes.callcentre import CallCentre
from tests.fakes.server import serve
from tests.utils.loop import sandbox_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
INBOUND = "whsec_" + base64.b64encode(b"r" * 32).decode()
INCIDENTS = 60
RUN_TIMEOUT_S = 180
QLOOP = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"
"""``qloop run`` (api.cli:main) with the webhook type registered, whether or not
``connectors/__init__.py`` imports it yet."""


def _config(tmp_path: Path, base: str) -> Path:
    path = sandbox_config(f"sqlite:///{tmp_path / 'qloop.db'}", tmp_path, incidents=INCIDENTS)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    common = {"type": "webhook", "url": f"{base}/tasks", "signing_secret": SECRET,
              "inbound_secret": INBOUND, "timeout": 10}  # fmt: skip
    doc["channels"] = {
        "phone": {**common, "kinds": ["callback"],
                  "poll_url": f"{base}/outcomes?kind=callback_attempt"},
        "survey-cc": {**common, "kinds": ["survey"],
                      "poll_url": f"{base}/outcomes?kind=survey_answer"},
    }  # fmt: skip
    doc["policies"]["default"]["survey"]["channels"] = ["survey-cc"]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", QLOOP, "run", "-c", str(config), "-q", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "QLOOP_LOG_LEVEL": "ERROR"},
    )


def _run_to_completion(config: Path) -> None:
    proc = _start(config, "--cycles", "3")
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, (out.decode(), err.decode())


def _age_claims(db: Path) -> int:
    """Move the claims of items left ``sending`` past the lease (the operator waited)."""
    if not db.exists():
        return 0
    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s, s.begin():
            stuck = list(s.scalars(select(OutboxItem).where(OutboxItem.state == "sending")))
            for item in stuck:
                claimed = as_utc(item.claimed_at)
                assert claimed is not None
                item.claimed_at = claimed - timedelta(seconds=CLAIM_LEASE_S + 1)
            return len(stuck)
    finally:
        engine.dispose()


SENT = ("callback", "survey", "ticket")
"""Outbox kinds that must be the same as an uninterrupted run's (not the follow-up comments)."""


def _snapshot(db: Path) -> dict[str, Any]:
    """Counts of every record the loop makes (not its bookkeeping: runs, audit)."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:

            def count(model: Any) -> int:
                return int(s.scalar(select(func.count()).select_from(model)) or 0)

            def grouped(*cols: Any, where: Any = None) -> dict[Any, int]:
                query = select(*cols, func.count()).group_by(*cols)
                if where is not None:
                    query = query.where(where.in_(SENT))
                rows = s.execute(query).all()
                return {tuple(r[:-1]) if len(r) > 2 else r[0]: r[-1] for r in rows}

            return {
                "incidents": count(Incident),
                "status_events": count(StatusEvent),
                "callback_tasks": grouped(CallbackTask.state),
                "sample_runs": count(SampleRun),
                "survey_invitations": grouped(SurveyInvitation.state),
                # comments on tickets tell how the facts arrived (a later survey updates a
                # finding raised before it), which crashes may change: the findings may not
                "outbox": grouped(OutboxItem.kind, OutboxItem.state, where=OutboxItem.kind),
                "outbox_states": sorted(set(s.scalars(select(OutboxItem.state)))),
                "outbox_keys": sorted(
                    s.scalars(select(OutboxItem.idempotency_key).where(OutboxItem.kind.in_(SENT)))
                ),
                "responses": grouped(Response.channel, Response.kind),
                "response_events": sorted(s.scalars(select(Response.provider_event_id))),
                "matches": grouped(Match.status, Match.method),
                "compliance_records": count(ComplianceRecord),
                "nonconformities": grouped(Nonconformity.rule),
                "nonconformity_findings": sorted(
                    s.execute(
                        select(
                            Nonconformity.dedup_key,
                            Nonconformity.severity,
                            Nonconformity.raised_at,
                            Nonconformity.detail,
                            Nonconformity.state != "withdrawn",
                        )
                    )
                ),
            }
    finally:
        engine.dispose()


def _centre() -> CallCentre:
    return CallCentre(task_secret=SECRET, outcome_secret=INBOUND)


@pytest.fixture
def baseline(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], CallCentre]]:
    """An uninterrupted run of the same month."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    cc = _centre()
    with serve(cc.app()) as base:
        _run_to_completion(_config(tmp, base))
    yield _snapshot(tmp / "qloop.db"), cc


def test_sigkill_at_any_point_loses_and_duplicates_nothing(
    tmp_path: Path, baseline: tuple[dict[str, Any], CallCentre]
) -> None:
    expected, clean = baseline
    rng = random.Random(20261125)
    cc = _centre()
    rounds: list[tuple[str, float]] = [
        ("delivery", 5),  # inside the first callback batch
        ("delivery", 9),  # again, after the in-doubt resends of the first kill
        ("delay", rng.uniform(1.5, 3.5)),
        ("past_resends", 3),  # past this round's in-doubt resends: into the next batch
        ("delay", rng.uniform(0.8, 2.5)),
    ]
    killed: list[str] = []
    in_doubt: list[int] = []
    with serve(cc.app()) as base:
        config = _config(tmp_path, base)
        for how, when in rounds:
            in_doubt.append(_age_claims(tmp_path / "qloop.db"))
            proc = _start(config)
            if how in ("delivery", "past_resends"):
                at = len(cc.deliveries) + int(when)
                at += in_doubt[-1] if how == "past_resends" else 0

                def kill_at(n: int, proc: Any = proc, at: int = at) -> None:
                    if n == at:
                        os.kill(proc.pid, signal.SIGKILL)

                cc.on_delivery = kill_at
                proc.wait(timeout=RUN_TIMEOUT_S)
                cc.on_delivery = None
            else:
                try:
                    proc.wait(timeout=when)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=RUN_TIMEOUT_S)
            proc.communicate()
            killed.append(f"{how} {when:g}: " + ("killed" if proc.returncode < 0 else "ran out"))
        in_doubt.append(_age_claims(tmp_path / "qloop.db"))
        _run_to_completion(config)

    got = _snapshot(tmp_path / "qloop.db")
    received = cc.keys_received()
    planned = {k for k in got["outbox_keys"] if k.startswith(("callback:", "survey:"))}
    resends = cc.resends
    print(
        f"\ncrash rounds: {killed}; in-doubt items found at restarts: {in_doubt}; "
        f"deliveries: {len(cc.deliveries)} raw, {len(cc.tasks)} unique, {resends} resends "
        f"(uninterrupted: {len(clean.deliveries)} raw)"
    )
    assert sum("killed" in k for k in killed) >= 3, killed
    # every planned task / invitation reached the call centre, once after dedup by webhook-id
    assert set(received) == planned and len(cc.tasks) == len(planned)
    assert sorted(t.payload["idempotency_key"] for t in cc.tasks.values()) == sorted(planned)
    assert all(n >= 1 for n in received.values())
    assert resends == len(cc.deliveries) - len(planned) and resends >= 1
    assert cc.rejected == []
    # nothing left behind, nothing dead
    assert {state for (_, state) in got["outbox"]} == {"sent"}
    assert got["outbox_states"] == ["sent"]  # ticket comments too
    # the same records as the uninterrupted run, and the same set of tasks at the call centre
    assert got == expected
    assert {t.payload["idempotency_key"] for t in clean.tasks.values()} == planned
    assert clean.resends == 0
