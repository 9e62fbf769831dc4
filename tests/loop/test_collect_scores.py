"""collect normalises each answer's score as ``normalise_score`` does, remembered per value."""

from __future__ import annotations

from datetime import UTC, datetime

from core.compliance import normalise_score
from core.loop.collect import response_row
from core.records import Outcome

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def _row(score: float | None, scale: tuple[float, float] = (1.0, 5.0)) -> dict[str, object]:
    out = Outcome("evt", "survey_answer", NOW, score=score, scale=scale, raw={"score": score})
    return response_row("survey-mail", out, NOW)


def test_scores_are_normalised_as_normalise_score_does_on_every_call() -> None:
    """Remembered or not, every score is what ``normalise_score`` gives."""
    cases = [(4, (1.0, 5.0)), (4.0, (1.0, 5.0)), (7, (0.0, 10.0)), (2, (1.0, 7.0)), (0.0, (0, 10))]
    for _ in range(2):  # the second time from memory: the same values
        for score, scale in cases:
            assert _row(score, scale)["score"] == normalise_score(score, *scale)


def test_an_off_scale_score_is_marked_every_time_not_remembered_as_a_value() -> None:
    """An off-scale score gets collect's error each time, never a remembered value."""
    for _ in range(3):
        row = _row(9, (1.0, 5.0))
        assert row["score"] is None
        assert row["raw"] == {"score": 9, "_qloop_error": "score 9 is outside the scale (1.0, 5.0)"}
    assert _row(None)["score"] is None
