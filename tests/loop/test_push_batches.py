"""push sends complaints' follow-up calls and tickets in batch calls, each once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import connectors  # noqa: F401  (registers the sandbox types)
from api.demo import demo_config
from connectors.sandbox import without_failures
from connectors.sandbox.channel import SandboxChannel
from connectors.sandbox.source import SandboxSource
from core.loop import run_once
from core.runtime import open_runtime
from core.store.models import OutboxItem


def test_follow_up_calls_and_complaint_tickets_go_in_batches_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = demo_config(tmp_path, 300)
    cfg = without_failures(cfg)
    singles: Counter[str] = Counter()
    send, create = SandboxChannel.send, SandboxSource.create_ticket

    def one_send(self: SandboxChannel, message: Any) -> Any:
        singles[f"send {message.idempotency_key.split(':')[0]}"] += 1
        return send(self, message)

    def one_ticket(self: SandboxSource, request: Any) -> Any:
        singles[f"ticket {request.dedup_key.split(':')[0]}"] += 1
        return create(self, request)

    monkeypatch.setattr(SandboxChannel, "send", one_send)
    monkeypatch.setattr(SandboxSource, "create_ticket", one_ticket)
    rt = open_runtime(cfg)
    try:
        sent: Counter[str] = Counter()
        for _ in range(3):
            summary = run_once(rt)
            assert summary.errors == []
            for step, _ in summary.steps:
                sent.update({k: v for k, v in step.counts.items() if k.startswith("sent_")})
        assert sent["sent_follow_up"] > 0 and sent["sent_complaint_ticket"] > 0
        assert singles == Counter()  # every one went in a batch call
        with rt.db.session() as s:
            states = dict(
                s.execute(
                    select(OutboxItem.kind, func.count())
                    .where(OutboxItem.kind.in_(("follow_up", "complaint_ticket")))
                    .where(OutboxItem.state == "sent")
                    .group_by(OutboxItem.kind)
                ).all()
            )
            refs = s.scalars(
                select(OutboxItem.provider_ref).where(OutboxItem.kind == "complaint_ticket")
            ).all()
        assert states == {
            "follow_up": sent["sent_follow_up"],
            "complaint_ticket": sent["sent_complaint_ticket"],
        }
        assert len(set(refs)) == len(refs)  # a ticket of its own each
    finally:
        rt.close()
