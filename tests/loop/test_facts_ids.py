"""The loop's fact loaders read exactly the incidents asked for, by range or by list.

``ids_condition`` reads a dense set of ids as one ``BETWEEN`` range and drops
the rows of ids in the range that were not asked for; a sparse set takes an
``IN`` list. Both must give what the ORM gives, incident by incident.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import select

from core.compliance import Attempt, SurveyAnswer
from core.loop import run_once
from core.loop._bulk import ids_condition
from core.loop.facts import load_answers, load_history
from core.records import Category, StatusChange
from core.store.models import Incident, Match, Response, StatusEvent
from tests.report.world import deployment
from tests.utils.loop import Deployment

__all__ = ["deployment"]


def test_ids_condition_range_or_list() -> None:
    dense, keep = ids_condition(Incident.id, [3, 5, 6])
    assert "BETWEEN" in str(dense) and keep == {3, 5, 6}
    sparse, keep = ids_condition(Incident.id, [1, 50])
    assert "IN" in str(sparse) and keep is None


@pytest.mark.parametrize("pick", ["all", "every_other", "first_and_last", "one"])
def test_loaders_read_exactly_the_ids_asked_for(deployment: Deployment, pick: str) -> None:
    rt = deployment.open()
    run_once(rt)
    with rt.db.session() as s:
        all_ids = list(s.scalars(select(Incident.id).order_by(Incident.id)))
        assert len(all_ids) >= 4
        ids = {
            "all": all_ids,
            "every_other": all_ids[::2],  # dense: a range, with ids to drop inside it
            "first_and_last": [all_ids[0], all_ids[-1]],
            "one": [all_ids[1]],
        }[pick]
        history = load_history(s, ids)
        attempts, answers = load_answers(s, ids)
        want_history: dict[int, list[StatusChange]] = defaultdict(list)
        for e in s.scalars(select(StatusEvent).order_by(StatusEvent.incident_id, StatusEvent.seq)):
            if e.incident_id in ids:
                want_history[e.incident_id].append(
                    StatusChange(e.at, Category(e.category), e.status)
                )
        want_attempts: dict[int, list[Attempt]] = defaultdict(list)
        want_answers: dict[int, list[SurveyAnswer]] = defaultdict(list)
        matched = s.execute(
            select(Match.incident_id, Response)
            .join(Response, Response.id == Match.response_id)
            .where(Match.status == "matched")
            .order_by(Response.occurred_at, Response.id)
        )
        for inc_id, r in matched:
            if inc_id not in ids:
                continue
            ref = f"response:{r.id}"
            if r.kind == "callback_attempt":
                want_attempts[inc_id].append(
                    Attempt(r.occurred_at, bool(r.reached), r.confirmed, r.score, ref)
                )
            else:
                want_answers[inc_id].append(SurveyAnswer(r.occurred_at, r.score, ref))
    assert dict(history) == dict(want_history)
    assert dict(attempts) == dict(want_attempts)
    assert dict(answers) == dict(want_answers)
    assert set(history) <= set(ids) and history  # some history was read, none of other ids
    if pick == "all":
        assert attempts or answers  # the world has matched answers
