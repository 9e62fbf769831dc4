"""reconcile's contact matching read once per run gives what one query per answer gave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from core.loop.plan import plan
from core.loop.pull import pull
from core.loop.reconcile import _by_contact, _Contacts, _Prefetched
from core.store.models import Incident, StatusEvent
from tests.utils.loop import Deployment, sandbox_config

US = timedelta(microseconds=1)


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(sandbox_config(database_url, tmp_path, incidents=120, failure_rate=0))
    yield dep
    dep.close()


def _answer(n: int, at: Any, phone: str | None, email: str | None) -> SimpleNamespace:
    """An answer without token or provider reference: only its contact can match it."""
    return SimpleNamespace(
        id=n,
        kind="callback_attempt",
        channel="callcentre",
        occurred_at=at,
        correlation_token=None,
        provider_ref=None,
        contact_phone=phone,
        contact_email=email,
        raw={},
    )


def test_contacts_read_per_run_match_like_one_query_per_answer(deployment: Deployment) -> None:
    rt = deployment.open()
    for source in rt.source_names():
        pull(rt, source)
    plan(rt)
    window = timedelta(hours=30)
    with rt.db.session() as s:
        rows = s.execute(
            select(StatusEvent.at, Incident.contact_phone, Incident.contact_email)
            .join(Incident, Incident.id == StatusEvent.incident_id)
            .where(StatusEvent.category.in_(("resolved", "closed")))
        ).all()
    assert len(rows) > 50
    answers = []
    for at, phone, email in rows:
        # on both edges of the window, just inside and just outside, by phone, by mail, both
        for when in (at - US, at, at + US, at + window - US, at + window, at + window + US):
            answers.append(_answer(len(answers), when, phone, None))
            answers.append(_answer(len(answers), when, None, email))
            answers.append(_answer(len(answers), when, phone, email))
    answers.append(_answer(len(answers), rows[0][0], None, None))
    lo = min(a.occurred_at for a in answers) - window
    hi = max(a.occurred_at for a in answers)
    contacts = _Contacts(lo, hi)
    found = []
    with rt.db.session() as s:
        for start in range(0, len(answers), 100):  # batches, as reconcile reads them
            batch = answers[start : start + 100]
            contacts.prefetch(s, batch, _Prefetched(s, batch))
            for resp in batch:
                expected = _by_contact(s, resp, window)
                got = contacts.candidates(s, resp, window)
                assert got == expected, resp
                found.append(len(got))
    assert contacts.phones and contacts.emails
    assert found.count(0) > 0 and any(n > 0 for n in found) and any(n > 1 for n in found)
    # an answer after the span read at the start of the run falls back to its own query
    late = _answer(0, hi + timedelta(days=1), rows[0][1], rows[0][2])
    with rt.db.session() as s:
        assert contacts.candidates(s, late, window) == _by_contact(s, late, window)
