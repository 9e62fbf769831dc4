"""The audit log keeps what people do, not machine traffic, for ``audit.retention_days``.

Webhook deliveries (duplicates included) and posted outcomes add no entry;
a token's use is audited once per token and UTC day; the housekeeping step
deletes entries older than the retention, in every loop run.
"""

from __future__ import annotations

import json
from datetime import timedelta

import yaml
from sqlalchemy import func, select

from core.conf import load_config
from core.conf.model import DEFAULT_AUDIT_RETENTION_DAYS
from core.loop import run_once
from core.loop.common import audit
from core.loop.housekeeping import prune_audit
from core.store.models import AuditLog
from tests.api.conftest import Served, auth, sign


def _entries(served: Served, **where: str) -> list[AuditLog]:
    with served.rt.db.session() as s:
        query = select(AuditLog).order_by(AuditLog.id)
        for column, value in where.items():
            query = query.where(getattr(AuditLog, column) == value)
        return list(s.scalars(query))


def test_webhook_deliveries_and_their_duplicates_add_no_audit_entry(served: Served) -> None:
    before = len(_entries(served))
    for n in range(20):
        body = json.dumps({"id": f"evt-{n % 5}", "at": "2026-10-21T09:30:00+08:00"}).encode()
        headers = {"x-hook-signature": sign(body)}
        r = served.client.post("/webhooks/hook", content=body, headers=headers)
        assert r.status_code == 200
    assert len(_entries(served)) == before


def test_a_tokens_use_is_audited_once_per_utc_day(served: Served) -> None:
    for _ in range(3):
        assert served.client.get("/incidents", headers=auth("qa-read")).status_code == 200
    assert served.client.get("/responses", headers=auth("admin")).status_code == 200
    uses = _entries(served, action="token.use")
    assert [(e.actor, e.detail["role"], e.detail["request"]) for e in uses] == [
        ("qa-read-user", "qa-read", "GET /incidents"),
        ("admin-user", "admin", "GET /responses"),
    ]
    # a fresh process the same day (a new app on the same store) does not repeat it
    from api.app import create_app
    from tests.api.conftest import TestClient

    with TestClient(create_app(served.rt.config, runtime=served.rt)) as other:
        assert other.get("/callbacks", headers=auth("qa-read")).status_code == 200
    assert len(_entries(served, action="token.use")) == 2
    # the next UTC day: once more
    served.deployment.clock.advance(days=1)
    assert served.client.get("/callbacks", headers=auth("qa-read")).status_code == 200
    assert served.client.get("/callbacks", headers=auth("qa-read")).status_code == 200
    later = _entries(served, action="token.use", actor="qa-read-user")
    assert len(later) == 2 and later[1].at.date() > later[0].at.date()


def test_housekeeping_deletes_audit_entries_past_the_retention(served: Served) -> None:
    rt = served.rt
    assert rt.config.audit_retention_days == DEFAULT_AUDIT_RETENTION_DAYS == 365
    now = rt.now()
    with rt.db.session() as s:
        audit(s, rt, "export", "period", "2025-01", actor="qa")
        for age in (366, 365 * 3):
            s.add(
                AuditLog(
                    at=now - timedelta(days=age),
                    actor="qa",
                    action="export",
                    entity="period",
                    entity_id=f"old-{age}",
                    detail={},
                )
            )
        s.add(
            AuditLog(
                at=now - timedelta(days=364),
                actor="qa",
                action="export",
                entity="period",
                entity_id="kept",
                detail={},
            )
        )
    result = prune_audit(rt)
    assert result.counts["audit_deleted"] == 2
    ids = {e.entity_id for e in _entries(served, action="export")}
    assert {"kept", "2025-01"} <= ids and not {"old-366", "old-1095"} & ids
    assert prune_audit(rt).counts["audit_deleted"] == 0


def test_the_loop_prunes_with_the_configured_retention(served: Served) -> None:
    path = served.deployment.path
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["audit"] = {"retention_days": 30}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert load_config(path).audit_retention_days == 30
    rt = served.deployment.open()
    with rt.db.session() as s:
        s.add(
            AuditLog(
                at=rt.now() - timedelta(days=31),
                actor="qa",
                action="outbox.replay",
                entity="outbox_item",
                entity_id="1",
                detail={},
            )
        )
    summary = run_once(rt)
    assert summary.total("audit_deleted") == 1
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).where(AuditLog.action == "outbox.replay")) == 0
