"""Put intents in the outbox, in the same transaction as the record they belong to."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.records import Contact, OutboundMessage
from core.store.models import Incident, OutboxItem

TOKEN_BYTES = 18
"""Correlation tokens are 144 random bits, URL-safe: unguessable."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def outbox_row(
    *, key: str, kind: str, target: str, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The column values of a new ``pending`` outbox item, for a bulk insert (add ``entity_id``)."""
    return {
        "idempotency_key": key,
        "kind": kind,
        "target": target,
        "payload": payload,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_at": None,
        "last_error": None,
        "provider_ref": None,
        "created_at": now,
        "sent_at": None,
    }


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    target: str,
    entity_id: int,
    payload: dict[str, Any],
    now: datetime,
) -> OutboxItem:
    item = OutboxItem(
        idempotency_key=key,
        kind=kind,
        target=target,
        entity_id=entity_id,
        payload=payload,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(item)
    return item


def message_payload(
    inc: Incident,
    *,
    kind: str,
    key: str,
    token: str,
    resolved_at: datetime,
    due_at: datetime | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "idempotency_key": key,
        "correlation_token": token,
        "source": inc.source,
        "incident_external_id": inc.external_id,
        "incident_key": inc.key,
        "title": inc.title,
        "priority": inc.priority,
        "contact": {
            "name": inc.contact_name,
            "phone": inc.contact_phone,
            "email": inc.contact_email,
        },
        "resolved_at": resolved_at.isoformat(),
        "due_at": due_at.isoformat() if due_at else None,
        "service": inc.service,
        "customer": inc.customer,
    }


def message_from_payload(payload: dict[str, Any]) -> OutboundMessage:
    return OutboundMessage(
        kind=payload["kind"],
        idempotency_key=payload["idempotency_key"],
        correlation_token=payload["correlation_token"],
        source=payload["source"],
        incident_external_id=payload["incident_external_id"],
        incident_key=payload["incident_key"],
        title=payload["title"],
        priority=payload["priority"],
        contact=Contact(**payload["contact"]),
        resolved_at=datetime.fromisoformat(payload["resolved_at"]),
        due_at=datetime.fromisoformat(payload["due_at"]) if payload.get("due_at") else None,
        service=payload.get("service"),
        customer=payload.get("customer"),
    )


def incident_contact(inc: Incident) -> Contact:
    return Contact(name=inc.contact_name, phone=inc.contact_phone, email=inc.contact_email)
