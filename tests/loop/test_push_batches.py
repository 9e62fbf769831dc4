"""push sends complaints' follow-up calls and tickets in batch calls, each once."""

from __future__ import annotations

import importlib
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


def _sent_in_three_runs(rt: Any) -> Counter[str]:
    """The ``sent_*`` counts of three whole loops, each without an error."""
    sent: Counter[str] = Counter()
    for _ in range(3):
        summary = run_once(rt)
        assert summary.errors == []
        for step, _ in summary.steps:
            sent.update({k: v for k, v in step.counts.items() if k.startswith("sent_")})
    return sent


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
        sent = _sent_in_three_runs(rt)
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


class _NoDb:
    """A runtime whose store must not be asked (a reference the batch read is used as is)."""

    class db:
        @staticmethod
        def session() -> Any:
            msg = "the ticket reference was read again"
            raise AssertionError(msg)


def test_follow_ups_use_the_ticket_references_read_for_their_batch() -> None:
    """A reference the batch read is used as is; a missing or unset one is asked again."""
    from core.loop.push import _ticket_ref

    assert _ticket_ref(_NoDb(), 7, {7: "SBX-12"}) == "SBX-12"  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="read again"):
        _ticket_ref(_NoDb(), 7, {7: None})  # type: ignore[arg-type]  # not created then: asks
    with pytest.raises(AssertionError, match="read again"):
        _ticket_ref(_NoDb(), 8, {7: "SBX-12"})  # type: ignore[arg-type]  # not in the batch


def test_a_follow_up_whose_ticket_is_created_after_the_batch_read_is_still_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's references are a shortcut: a missing one is read again before giving up."""
    push_module = importlib.import_module("core.loop.push")  # core.loop.push is the function
    cfg = without_failures(demo_config(tmp_path, 300))
    monkeypatch.setattr(push_module, "_batch_ticket_refs", lambda s, items: {})
    rt = open_runtime(cfg)
    try:
        sent = _sent_in_three_runs(rt)
        assert sent["sent_ticket_comment"] + sent["sent_ticket_resolve"] > 0
    finally:
        rt.close()
