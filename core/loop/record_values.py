"""The values of a compliance record: an evaluation's columns, its JSON-ready
resolutions and findings, and the source flags that disagree with qloop's verdicts.

The evaluate step's new records on SQLite are bound without these dicts
(:mod:`core.loop.record_rows`); updates, PostgreSQL and the export's
as-of figures use them.
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from core.compliance import CallbackVerdict, Evaluation, Finding
from core.store.models import Incident

_ISO: dict[datetime, str] = {}
_ISO_MAX = 8192


def _iso(value: datetime) -> str:
    """``value.isoformat()``, remembered for UTC instants (they recur within an incident:
    a resolution's instant is in its outcome and its findings; deadlines fall on few days).

    Only values whose zone is ``UTC`` are remembered: equal instants in other
    zones compare equal but print differently. The memo is emptied when full.
    """
    if value.tzinfo is not UTC or type(value) is not datetime:
        return value.isoformat()
    text = _ISO.get(value)
    if text is None:
        if len(_ISO) >= _ISO_MAX:
            _ISO.clear()
        text = _ISO[value] = value.isoformat()
    return text


def finding_to_json(f: Finding) -> dict[str, Any]:
    return {
        "key": f.key,
        "rule": f.rule,
        "severity": f.severity,
        "resolution_at": _iso(f.resolution_at) if f.resolution_at else None,
        "raised_at": _iso(f.raised_at),
        "deadline": _iso(f.deadline),
        "detail": f.detail,
        "ref": f.ref,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value) if hasattr(value, "value") else value


def disagreement(inc: Incident, ev: Evaluation) -> str | None:
    """Which of the source's SLA flags disagree with qloop's verdicts."""
    sla = inc.source_sla if isinstance(inc.source_sla, dict) else None
    if not sla:
        return None
    return flags_disagreement(sla.get("response_met"), sla.get("resolution_met"), ev)


def flags_disagreement(response: Any, resolution: Any, ev: Evaluation) -> str | None:
    """Which of the source's flags (``response_met``, ``resolution_met`` values as the
    source gave them: only booleans count) disagree with qloop's verdicts, comma-joined."""
    ours = ev.response_met
    response_differs = type(response) is bool and ours is not None and response != ours
    ours = ev.resolution_met
    resolution_differs = type(resolution) is bool and ours is not None and resolution != ours
    if response_differs:
        return "response,resolution" if resolution_differs else "response"
    return "resolution" if resolution_differs else None


def resolution_json(outcome: Any) -> dict[str, Any]:
    """``_jsonable(asdict(outcome))`` for a flat dataclass, without asdict's deep copies."""
    names = _FIELDS.get(type(outcome))
    if names is None:
        names = _FIELDS[type(outcome)] = tuple(f.name for f in fields(outcome))
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(outcome, name)
        kind = type(value)
        if value is None or kind in _PLAIN:
            out[name] = value
        elif kind is datetime:
            out[name] = _iso(value)
        elif kind is CallbackVerdict:  # what _jsonable gives, without its attribute probes
            out[name] = str(value)
        elif is_dataclass(value) or isinstance(value, dict | list | tuple):
            nested: dict[str, Any] = _jsonable(asdict(outcome))  # nested: the general path
            return nested
        else:
            out[name] = _jsonable(value)
    return out


_PLAIN = frozenset({bool, int, float, str})
"""Types :func:`_jsonable` returns unchanged."""
_FIELDS: dict[type, tuple[str, ...]] = {}


def evaluation_values(inc: Incident, ev: Evaluation) -> dict[str, Any]:
    """The columns of ``inc``'s compliance record for evaluation ``ev`` (not its keys)."""
    sla = inc.source_sla if isinstance(inc.source_sla, dict) else None
    theirs_response = sla.get("response_met") if sla else None
    theirs_resolution = sla.get("resolution_met") if sla else None
    return {
        "evaluated_at": ev.evaluated_at,
        "month": ev.month,
        "cancelled": ev.cancelled,
        "first_response_at": ev.first_response_at,
        "resolved_at": ev.resolved_at,
        "reopen_count": ev.reopen_count,
        "response_s": ev.response_s,
        "response_target_s": ev.response_target_s,
        "response_met": ev.response_met,
        "resolution_s": ev.resolution_s,
        "resolution_target_s": ev.resolution_target_s,
        "resolution_met": ev.resolution_met,
        "callback_verdict": str(ev.callback_verdict) if ev.callback_verdict else None,
        "callback_due": ev.callback_due,
        "confirmed": ev.confirmed,
        "callback_score": ev.callback_score,
        "survey_score": ev.survey_score,
        "source_response_met": theirs_response if type(theirs_response) is bool else None,
        "source_resolution_met": theirs_resolution if type(theirs_resolution) is bool else None,
        "sla_disagreement": disagreement(inc, ev) if sla else None,
        "resolutions": [resolution_json(r) for r in ev.resolutions],
        "findings": [finding_to_json(f) for f in ev.findings],
    }
