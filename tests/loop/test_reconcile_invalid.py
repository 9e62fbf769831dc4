"""An answer collect marked invalid (a score off its scale) goes to review with its error."""

from __future__ import annotations

from sqlalchemy import select

from core.loop import run_once
from core.store.models import Match, Response
from tests.loop.test_nc_lifecycle import L, _resolved
from tests.loop.test_nc_lifecycle import deployment as deployment  # the fixture
from tests.utils.fixture_connectors import WORLD, attempt
from tests.utils.loop import Deployment


def test_a_score_off_its_scale_is_reviewed_with_collects_error(deployment: Deployment) -> None:
    WORLD.incidents = [_resolved("ITSD-1", 15), _resolved("ITSD-2", 16)]
    WORLD.answers = {
        "ITSD-1": [attempt(L(10, 15, 16), True, True, 9)],  # the scale is 1-5
        "ITSD-2": [attempt(L(10, 16, 16), True, True, 4)],
    }
    rt = deployment.open()
    assert run_once(rt).errors == []
    with rt.db.session() as s:
        rows = s.execute(
            select(Response.score_raw, Response.raw, Match.status, Match.reason, Match.candidates)
            .join(Match, Match.response_id == Response.id)
            .order_by(Response.id)
        ).all()
    (bad_score, bad_raw, *bad), (good_score, good_raw, *good) = rows
    assert bad_score == 9 and "_qloop_error" in bad_raw
    status, reason, candidates = bad
    assert status == "review"
    assert reason == f"invalid answer: {bad_raw['_qloop_error']}"
    assert len(candidates) == 1  # the incident its token points to, for the reviewer
    assert good_score == 4 and "_qloop_error" not in good_raw
    assert good == ["matched", None, []]
