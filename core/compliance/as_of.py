"""What is known of an incident as of an instant (SPEC §10, "Evaluation instant").

Decisions beyond the SPEC, applied exactly:

- A fact is seen when its instant, truncated to the whole second, is at or
  before ``as_of`` (itself truncated): status changes by their ``at``,
  callback attempts and survey answers by the instant they occurred. When
  they reached the store does not matter: the same stored facts and
  ``as_of`` give the same verdicts whenever they are computed.
- An incident created after ``as_of`` did not exist yet (``None``).
- Priority, creation and contact details are the incident's current ones:
  the store keeps no history of them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core.compliance.evaluate import IncidentFacts
from core.timeutil import to_utc


def whole_second(instant: datetime) -> datetime:
    """``instant`` in UTC without its fraction of a second."""
    return to_utc(instant)  # to_utc truncates


def seen_at(instant: datetime, as_of: datetime) -> bool:
    """Whether a fact at ``instant`` is seen by an evaluation as of ``as_of``."""
    return whole_second(instant) <= whole_second(as_of)


def facts_as_of(facts: IncidentFacts, as_of: datetime) -> IncidentFacts | None:
    """``facts`` without what happened after ``as_of``; None if the incident was not created yet."""
    if not seen_at(facts.created_at, as_of):
        return None
    return replace(
        facts,
        history=[c for c in facts.history if seen_at(c.at, as_of)],
        attempts=[a for a in facts.attempts if seen_at(a.at, as_of)],
        survey_answers=[a for a in facts.survey_answers if seen_at(a.at, as_of)],
    )
