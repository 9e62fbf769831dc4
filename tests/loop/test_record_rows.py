"""The JSON texts of new records written by orjson at once equal the general path's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from core.compliance import CallbackVerdict, Finding, ResolutionOutcome
from core.loop.record_rows import findings_text, resolutions_text
from core.loop.record_values import finding_to_json, flags_disagreement, resolution_json
from core.store.db import json_text

AT = datetime(2026, 10, 5, 9, 30, tzinfo=UTC)
ZONES: list[object] = [UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30))]
ZONES.append(ZoneInfo("Europe/Paris"))


def _outcome(at: datetime, *, score: float | None = 4.5) -> ResolutionOutcome:
    return ResolutionOutcome(
        index=0,
        at=at,
        window_end=None,
        due=at + timedelta(hours=2, microseconds=7),
        verdict=CallbackVerdict.PENDING,
        attempts=1,
        attempts_by_due=0,
        first_reached_at=at + timedelta(minutes=3),
        confirmed=True,
        callback_score=score,
        callback_ref="response:1",
        final=True,
    )


def _finding(at: datetime | None, raised: datetime) -> Finding:
    return Finding(
        rule="callback_late",
        resolution_at=at,
        severity="minor",
        raised_at=raised,
        deadline=raised + timedelta(days=14),
        detail='late "by" 2 h — ünïcode',
        ref=None,
    )


@pytest.mark.parametrize("zone", ZONES)
def test_resolutions_text_is_the_general_paths(zone: object) -> None:
    outcomes = (_outcome(AT.astimezone(zone)), _outcome(AT, score=None))  # type: ignore[arg-type]
    assert resolutions_text(outcomes) == json_text([resolution_json(o) for o in outcomes])
    assert resolutions_text(()) == "[]"


def test_an_outcome_with_more_attributes_takes_the_general_path() -> None:
    outcome = _outcome(AT)
    outcome.__dict__["cached"] = 1  # what orjson would write, the general path does not
    assert resolutions_text((outcome,)) == json_text([resolution_json(outcome)])
    assert "cached" not in resolutions_text((outcome,))


@pytest.mark.parametrize("zone", ZONES)
def test_findings_text_is_the_general_paths(zone: object) -> None:
    raised = (AT + timedelta(microseconds=120)).astimezone(zone)  # type: ignore[arg-type]
    findings = (_finding(AT, raised), _finding(None, AT))
    assert findings_text(findings) == json_text([finding_to_json(f) for f in findings])
    assert findings_text(()) == "[]"


def _named_flags(theirs: tuple[object, object], ours: tuple[object, object]) -> str | None:
    """The names the step stored before: each bool flag that differs from a verdict."""
    names = [
        name
        for name, t, o in zip(("response", "resolution"), theirs, ours, strict=True)
        if isinstance(t, bool) and o is not None and t != o
    ]
    return ",".join(names) or None


@pytest.mark.parametrize("response", [True, False, None, 1, "true"])
@pytest.mark.parametrize("resolution", [True, False, None, 0])
def test_flags_disagreement_names_each_boolean_flag_that_differs(
    response: object, resolution: object
) -> None:
    for ours in [(True, False), (False, True), (None, None), (True, True), (False, False)]:
        ev = SimpleNamespace(response_met=ours[0], resolution_met=ours[1])
        got = flags_disagreement(response, resolution, ev)  # type: ignore[arg-type]
        assert got == _named_flags((response, resolution), ours)
