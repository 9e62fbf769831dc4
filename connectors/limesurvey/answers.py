"""LimeSurvey answers: decode the exported responses and map them to :class:`Outcome`.

``export_responses_by_token(..., "json", ...)`` returns the JSON export
file as a base64 string. Its document is ``{"responses": [row, ...]}``
with one dict per response (LimeSurvey 4+); 3.x wrapped each row as
``{"<id>": row}``. Both are accepted. With heading type ``code`` a row's
keys are the question codes (``SAT``, ``CONF``, ``Q1[SQ001]``…) beside
``id``, ``submitdate`` (naive server-local ``Y-m-d H:i:s``; empty while
incomplete), ``token``, ``startlanguage``, ``lastpage``.

Which question holds what is the ``answers`` section of the mapping
(``mappings/limesurvey.yaml``)::

    answers:
      confirmed: {question: CONF, yes_codes: [Y, A1], no_codes: [N, A2]}
      score: {question: SAT, scale: [0, 10], values: {A1: 0, ...}}
      comment: {question: COMMENT}
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from core.errors import ConfigError, RetriableError
from core.records import Contact, Outcome

NO_DATESTAMP = "1980-01-01 00:00:00"
"""What LimeSurvey stores as submitdate when the survey keeps no date stamps."""


@dataclass(frozen=True)
class AnswerMapping:
    """Where the confirmation, the score and the comment are in a response row."""

    confirmed_question: str | None = None
    yes_codes: frozenset[str] = frozenset({"Y"})
    no_codes: frozenset[str] = frozenset({"N"})
    score_question: str | None = None
    scale: tuple[float, float] = (1.0, 5.0)
    score_values: Mapping[str, float] = field(default_factory=dict)
    comment_question: str | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str) -> AnswerMapping:
        """Read the ``answers`` section of a channel mapping.

        Raises:
            ConfigError: a malformed section, naming ``<where>.mapping.answers.<key>``.
        """
        section = mapping.get("answers") or {}
        at = f"{where}.mapping.answers"
        if not isinstance(section, Mapping):
            msg = f"{at}: must be a mapping"
            raise ConfigError(msg)
        confirmed = _section(section, "confirmed", at)
        score = _section(section, "score", at)
        comment = _section(section, "comment", at)
        scale = score.get("scale", [1, 5])
        if (
            not isinstance(scale, Sequence)
            or len(scale) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
            or not scale[0] < scale[1]
        ):
            msg = f"{at}.score.scale: must be [min, max] numbers with min < max, got {scale!r}"
            raise ConfigError(msg)
        values = score.get("values") or {}
        if not isinstance(values, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
        ):
            msg = f"{at}.score.values: must map answer codes to numbers"
            raise ConfigError(msg)
        return cls(
            confirmed_question=_question(confirmed, f"{at}.confirmed"),
            yes_codes=_codes(confirmed.get("yes_codes", ["Y"]), f"{at}.confirmed.yes_codes"),
            no_codes=_codes(confirmed.get("no_codes", ["N"]), f"{at}.confirmed.no_codes"),
            score_question=_question(score, f"{at}.score"),
            scale=(float(scale[0]), float(scale[1])),
            score_values={str(k): float(v) for k, v in values.items()},
            comment_question=_question(comment, f"{at}.comment"),
        )

    def confirmed(self, row: Mapping[str, Any]) -> bool | None:
        """True/False from the confirmation question's code, None when unanswered or unknown."""
        value = _text(row.get(self.confirmed_question)) if self.confirmed_question else None
        if value is None:
            return None
        if value in self.yes_codes:
            return True
        if value in self.no_codes:
            return False
        return None

    def score(self, row: Mapping[str, Any]) -> float | None:
        """The score on :attr:`scale`: the code's mapped value, else the answer as a number."""
        value = _text(row.get(self.score_question)) if self.score_question else None
        if value is None:
            return None
        if value in self.score_values:
            return self.score_values[value]
        try:
            return float(value)
        except ValueError:
            return None

    def comment(self, row: Mapping[str, Any]) -> str | None:
        value = _text(row.get(self.comment_question)) if self.comment_question else None
        return value or None


def _section(section: Mapping[str, Any], key: str, at: str) -> Mapping[str, Any]:
    value = section.get(key) or {}
    if not isinstance(value, Mapping):
        msg = f"{at}.{key}: must be a mapping with at least 'question'"
        raise ConfigError(msg)
    return value


def _question(section: Mapping[str, Any], at: str) -> str | None:
    value = section.get("question")
    if value is not None and (not isinstance(value, str) or not value):
        msg = f"{at}.question: must be a question code (string)"
        raise ConfigError(msg)
    return value


def _codes(value: Any, at: str) -> frozenset[str]:
    items = value if isinstance(value, list | tuple) else [value]
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in items):
        msg = f"{at}: must be a list of answer codes"
        raise ConfigError(msg)
    return frozenset(str(v) for v in items)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def decode_export(data: Any, where: str) -> list[dict[str, Any]]:
    """The response rows of a base64 JSON export (both document shapes).

    Raises:
        RetriableError: the payload is not base64 JSON (a truncated reply).
    """
    if not isinstance(data, str):
        msg = f"{where}: the export is not a base64 string ({type(data).__name__})"
        raise RetriableError(msg)
    try:
        doc = json.loads(base64.b64decode(data, validate=False).decode("utf-8-sig"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        msg = f"{where}: the export is not base64-encoded JSON ({type(exc).__name__})"
        raise RetriableError(msg) from None
    items = doc.get("responses") if isinstance(doc, dict) else doc
    if items is None:
        return []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        msg = f"{where}: the export has no list of responses"
        raise RetriableError(msg)
    rows: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "id" not in item and len(item) == 1:
            (rid, inner), *_ = item.items()
            if isinstance(inner, dict):
                rows.append({"id": rid, **inner})
                continue
        rows.append(item)
    return rows


def local_time(text: Any, zone: tzinfo) -> datetime | None:
    """A naive LimeSurvey date (``Y-m-d H:i[:s]``, server-local) as aware UTC, or None."""
    if not isinstance(text, str) or not text.strip() or text.strip() == NO_DATESTAMP:
        return None
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    local = naive.replace(tzinfo=zone) if naive.tzinfo is None else naive
    return local.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Participant:
    """The participant row a response belongs to (from ``list_participants``)."""

    tid: int
    token: str
    correlation_token: str | None
    incident: str | None
    email: str | None
    name: str | None
    completed: str


def to_outcome(
    row: Mapping[str, Any],
    participant: Participant,
    *,
    survey_id: int,
    answers: AnswerMapping,
    zone: tzinfo,
    fallback_time: datetime,
) -> Outcome | None:
    """One :class:`Outcome` for a complete response row (None: incomplete or no id)."""
    rid = _text(row.get("id"))
    submitted = row.get("submitdate")
    if rid is None or not _text(submitted):
        return None
    occurred = (
        local_time(submitted, zone) or local_time(participant.completed, zone) or fallback_time
    )
    return Outcome(
        provider_event_id=f"{survey_id}:{rid}",
        kind="survey_answer",
        occurred_at=occurred,
        correlation_token=participant.correlation_token,
        provider_ref=f"{survey_id}:{participant.tid}",
        contact=Contact(name=participant.name, email=participant.email),
        confirmed=answers.confirmed(row),
        score=answers.score(row),
        scale=answers.scale,
        comment=answers.comment(row),
        raw={
            "survey_id": survey_id,
            "tid": participant.tid,
            "incident": participant.incident,
            "completed": participant.completed,
            "response": dict(row),
        },
    )
