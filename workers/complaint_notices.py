"""Complaint notices: the team's notification and the escalation, by e-mail or signed webhook.

:mod:`core.complaints` queues one outbox item (kind ``complaint_notice``)
per complaint, audience (``notify`` or ``escalate``) and address; this job
sends them with the report delivery's senders (:func:`workers.delivery.smtp_send`,
:func:`workers.delivery.post_signed`), under the outbox's rules:

- an item is claimed (``sending``) before it is sent and marked ``sent``
  after, so two jobs never send it both;
- a failure is retried after the outbox backoff, and dead-lettered after
  ``outbox.max_attempts`` (visible, replayable with ``qloop outbox replay``);
- an item left ``sending`` by a killed process is sent again after
  :data:`CLAIM_LEASE` with the same ``Message-ID`` or ``webhook-id``
  (derived from its idempotency key), so the receiver can drop the
  duplicate.

The recipient's secret is read from the configuration when sending; the
item holds only the index of its ``complaints.notify``/``escalate`` entry.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import or_, select, update

from connectors.webhook.signing import webhook_id_for
from core.complaints.following import NOTICE
from core.conf.masking import scrub
from core.conf.model import ComplaintRecipient, ComplaintsConfig
from core.errors import ConfigError, FatalError, QloopError, RetriableError
from core.loop.common import StepResult, audit
from core.retry import outbox_delay
from core.runtime import Runtime
from core.states import OutboxState
from core.store.models import Complaint, OutboxItem
from workers.delivery import post_signed, smtp_send

log = logging.getLogger("qloop.complaints")
CLAIM_LEASE = timedelta(minutes=5)
"""A notice still ``sending`` after this is sent again (same message id: the receiver dedups)."""
BATCH = 100


def _entry(conf: ComplaintsConfig, audience: str, index: int) -> ComplaintRecipient:
    entries = conf.notify if audience == "notify" else conf.escalate
    if not 0 <= index < len(entries):
        msg = f"complaints.{audience}[{index}]: no such entry any more"
        raise FatalError(msg, field=f"complaints.{audience}")
    return entries[index]


def send_one(rt: Runtime, item: OutboxItem, at: datetime) -> str:
    """Send notice ``item``; returns its message id (``webhook-id`` for a webhook)."""
    conf = rt.config.complaints
    if conf is None:
        msg = "complaints: the block is gone from the configuration"
        raise FatalError(msg, field="complaints")
    p = item.payload
    entry = _entry(conf, str(p["audience"]), int(p["entry"]))
    ident = webhook_id_for(item.idempotency_key)
    where = f"complaints.{p['audience']}[{p['entry']}]"
    if entry.via == "email":
        smtp = rt.config.reports.smtp
        if smtp is None:
            msg = f"{where}: via email needs reports.smtp"
            raise ConfigError(msg, field="reports.smtp")
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = str(p["to"])
        message["Subject"] = str(p["subject"])
        message["Date"] = format_datetime(at)
        message["Message-ID"] = f"<{ident}@qloop>"
        message.set_content(str(p["text"]) + "\n")
        smtp_send(smtp, message)
        return f"<{ident}@qloop>"
    if not entry.secret:
        msg = f"{where}: via webhook needs a secret (whsec_…)"
        raise ConfigError(msg, field=f"{where}.secret")
    body = json.dumps(
        {
            "type": f"complaint.{p['audience']}",
            "complaint": p["complaint"],
            "incident_key": p["incident_key"],
            "ticket_ref": p.get("ticket_ref"),
            "subject": p["subject"],
            "text": p["text"],
        },
        ensure_ascii=False,
        sort_keys=True,
    ).encode("utf-8")
    post_signed(entry.secret, f"{where}.secret", str(p["to"]), body, ident, at)
    return ident


def _claim(rt: Runtime) -> list[int]:
    now = rt.now()
    with rt.db.session() as s:
        ids = list(
            s.scalars(
                select(OutboxItem.id)
                .where(
                    OutboxItem.kind == NOTICE,
                    or_(
                        (OutboxItem.state == OutboxState.PENDING)
                        & (OutboxItem.next_attempt_at <= now),
                        (OutboxItem.state == OutboxState.SENDING)
                        & (OutboxItem.claimed_at <= now - CLAIM_LEASE),
                    ),
                )
                .order_by(OutboxItem.id)
                .limit(BATCH)
            )
        )
        if ids:
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(ids))
                .values(state=OutboxState.SENDING, claimed_at=now)
            )
        return ids


def send_notices(rt: Runtime) -> StepResult:
    """Send every due complaint notice once."""
    result = StepResult("complaint notices")
    seen: set[int] = set()
    while True:
        ids = [i for i in _claim(rt) if i not in seen]
        if not ids:
            return result
        seen.update(ids)
        for item_id in ids:
            with rt.db.session() as s:
                item = s.get(OutboxItem, item_id)
                assert item is not None
                now = rt.now()
                try:
                    ref = send_one(rt, item, now)
                except Exception as exc:
                    _failed(rt, item, exc, now)
                    result.counts[f"{item.state}"] += 1
                    result.errors.append(f"{item.idempotency_key}: {item.last_error}")
                    continue
                item.state, item.provider_ref, item.sent_at = OutboxState.SENT, ref, now
                item.last_error = None
                if item.payload.get("audience") == "notify":
                    complaint = s.get(Complaint, item.entity_id)
                    if complaint is not None and complaint.notified_at is None:
                        complaint.notified_at = now
                audit(s, rt, "complaint.notice", "outbox_item", item.id, key=item.idempotency_key)
                result.counts[f"sent_{item.payload.get('audience')}"] += 1


def _failed(rt: Runtime, item: OutboxItem, exc: Exception, now: datetime) -> None:
    """Record a failed attempt: due again after the backoff, or dead after the last one."""
    item.attempts += 1
    item.last_error = scrub(f"{type(exc).__name__}: {exc}")[:2000]
    retriable = isinstance(exc, RetriableError) or not isinstance(exc, QloopError)
    if retriable and item.attempts < rt.config.outbox_max_attempts:
        delay = outbox_delay(
            item.attempts,
            rt.config.outbox_backoff_initial_s,
            rt.config.outbox_backoff_max_s,
            exc.retry_after if isinstance(exc, RetriableError) else None,
        )
        item.state, item.next_attempt_at = OutboxState.PENDING, now + timedelta(seconds=delay)
        return
    item.state = OutboxState.DEAD
    log.error("complaint notice %s dead-lettered: %s", item.idempotency_key, item.last_error)
