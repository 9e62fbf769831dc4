"""The QA web page's fixtures: a browser-like client signed in with a role's token."""

from __future__ import annotations

import re
import warnings
from typing import Any

from sqlalchemy import select

from core.loop.reconcile import reconcile
from core.store.models import AuditLog
from tests.api.conftest import TOKENS, Served, auth, served

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PHONE = "+8613912345678"
EMAIL = "li.na@example.cn"
MOBILE_IN_TEXT = "13812345678"
__all__ = ["served"]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def browser(served: Served) -> TestClient:
    """A client of its own (its own cookie jar), as a separate browser."""
    return TestClient(served.app, follow_redirects=False)


def signed_in(served: Served, role: str) -> TestClient:
    """A browser signed in to /qa with ``role``'s token."""
    client = browser(served)
    form = client.get("/qa/signin")
    r = client.post("/qa/signin", data={"csrf": csrf_of(form.text), "token": TOKENS[role]})
    assert r.status_code == 303 and r.headers["location"] == "/qa", r.text
    return client


def page_csrf(client: TestClient) -> str:
    return csrf_of(client.get("/qa/review").text)


def review_items(served: Served, n: int) -> list[int]:
    """``n`` answers nobody can match (with a phone, e-mail and a number in the comment)."""
    outcomes: list[dict[str, Any]] = [
        {
            "provider_event_id": f"web-orphan-{i}",
            "kind": "callback_attempt",
            "occurred_at": "2026-10-20T08:00:00+00:00",
            "reached": True,
            "confirmed": True,
            "score": 5,
            "contact": {"phone": PHONE, "email": EMAIL},
            "comment": f"please call back on {MOBILE_IN_TEXT}",
        }
        for i in range(n)
    ]
    r = served.client.post(
        "/channels/hook/outcomes", json={"outcomes": outcomes}, headers=auth("channel")
    )
    assert r.status_code == 200, r.text
    reconcile(served.rt)
    items = served.client.get("/review", headers=auth("admin")).json()["items"]
    return [i["id"] for i in items if i["response"]["provider_event_id"].startswith("web-orphan")]


def audit_entries(served: Served, action: str) -> list[AuditLog]:
    with served.rt.db.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))
