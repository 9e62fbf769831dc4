"""Twilio callbacks and polled records → :class:`core.records.Outcome`.

Where the answer sits is data, not code: ``mappings/twilio.yaml`` names
the task attributes and flow variables that hold reached, confirmed,
score (and its scale), comment and agent. A TaskRouter task's outcome may
be one attempt, or a list of dial attempts (time, reached, agent) plus a
wrap-up form (confirmed, score, comment) that belongs to the attempt that
reached the customer. Every attempt needs its own time: an attempt
without one is an :class:`InputError` naming the field, never the
event's time (a task completed days after three timely attempts would
otherwise turn an acceptable "unreached" into "missed").
:class:`OutcomeMapping` reads that document once; the functions here
apply it to

* a TaskRouter event callback (form parameters ``EventType``,
  ``TaskSid``, ``TaskAttributes``, ``WorkerName``, ``Timestamp``…),
* a TaskRouter Event resource from the REST list (``event_type``,
  ``event_data``…), the polling safety net,
* a Studio flow's callback (its Make HTTP Request widget) and a Studio
  execution context.

A webhook and a poll of the same answer produce the same
``provider_event_id`` — ``<TaskSid>#<n>`` for the n-th attempt recorded on
a task, the execution SID for Studio — so the store keeps one response.
Event SIDs are kept in ``raw`` only: one completion fires several events
(``task.completed``, ``reservation.completed``) with different SIDs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from connectors.twilio.rest import parse_date
from core.errors import ConfigError, InputError
from core.limits import check_outcome
from core.mapping import get_path
from core.records import Outcome, OutcomeKind, Rejected

FIELDS = ("at", "reached", "confirmed", "score", "comment", "agent")
WRAPUP_FIELDS = ("confirmed", "score", "comment")
TASK_DONE_EVENTS = frozenset({"task.completed", "task.canceled", "reservation.completed"})
"""Events after which a task's attributes hold its final outcome."""


@dataclass(frozen=True)
class OutcomeMapping:
    """The outcome part of ``mappings/twilio.yaml`` (merged with the deployment's overrides)."""

    yes: frozenset[Any]
    no: frozenset[Any]
    task_token: str
    task_key: str
    task_outcome: str | None
    task_attempts: str | None
    task_fields: Mapping[str, str]
    task_wrapup: Mapping[str, str]
    task_scale: tuple[float, float]
    studio_token: str
    studio_kind: str
    studio_execution: str
    studio_data: str
    studio_variables: str
    studio_fields: Mapping[str, str]
    studio_scales: Mapping[str, tuple[float, float]]

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], where: str = "mappings/twilio.yaml"
    ) -> OutcomeMapping:
        """Read the mapping document.

        Raises:
            ConfigError: a required key is missing or a scale is not ``[min, max]``.
        """
        tr = _section(doc, "taskrouter", where)
        st = _section(doc, "studio", where)
        booleans = doc.get("booleans") or {}
        return cls(
            yes=frozenset(_norm(v) for v in booleans.get("true") or booleans.get(True) or ()),
            no=frozenset(_norm(v) for v in booleans.get("false") or booleans.get(False) or ()),
            task_token=_str(tr, "token", f"{where}: taskrouter"),
            task_key=_str(tr, "key", f"{where}: taskrouter"),
            # "attempt" is the older name of "outcome": only a deployment sets it now
            task_outcome=tr.get("attempt") or tr.get("outcome") or None,
            task_attempts=tr.get("attempts") or None,
            task_fields=_fields(tr, f"{where}: taskrouter"),
            task_wrapup=_fields(tr, f"{where}: taskrouter", "wrapup", WRAPUP_FIELDS),
            task_scale=_scale(tr.get("scale", [1, 5]), f"{where}: taskrouter.scale"),
            studio_token=_str(st, "token", f"{where}: studio"),
            studio_kind=_str(st, "kind", f"{where}: studio"),
            studio_execution=_str(st, "execution", f"{where}: studio"),
            studio_data=_str(st, "data", f"{where}: studio"),
            studio_variables=_str(st, "variables", f"{where}: studio"),
            studio_fields=_fields(st, f"{where}: studio"),
            studio_scales={
                kind: _scale(value, f"{where}: studio.scale.{kind}")
                for kind, value in (
                    st.get("scale") or {"callback": [1, 5], "survey": [1, 5]}
                ).items()
            },
        )

    def boolean(self, value: Any) -> bool | None:
        """Yes/no from a recorded value; None when absent or not recognised."""
        if value is None or value == "":
            return None
        key = _norm(value)
        if key in self.yes:
            return True
        if key in self.no:
            return False
        return None


def _section(doc: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if not isinstance(value, Mapping):
        msg = f"{where}: section {name!r} is missing"
        raise ConfigError(msg)
    return value


def _str(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        msg = f"{where}.{key}: a path is required"
        raise ConfigError(msg)
    return value


def _fields(
    section: Mapping[str, Any],
    where: str,
    key: str = "fields",
    valid: tuple[str, ...] = FIELDS,
) -> dict[str, str]:
    fields = section.get(key) or {}
    if not isinstance(fields, Mapping):
        msg = f"{where}.{key}: must map field names to paths"
        raise ConfigError(msg)
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        msg = f"{where}.{key}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        raise ConfigError(msg)
    return {k: str(v) for k, v in fields.items() if v}


def _scale(value: Any, where: str) -> tuple[float, float]:
    ok = isinstance(value, list | tuple) and len(value) == 2
    if ok and all(isinstance(v, int | float) for v in value) and value[0] < value[1]:
        return float(value[0]), float(value[1])
    msg = f"{where}: must be [min, max] with min < max, not {value!r}"
    raise ConfigError(msg)


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value) if value in (0, 1) else value
    text = str(value).strip().lower()
    return {"1": True, "0": False}.get(text, text)


def _score(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_attributes(text: Any, where: str) -> dict[str, Any]:
    """Task attributes from their JSON string (or an already decoded object)."""
    if isinstance(text, Mapping):
        return dict(text)
    if text in (None, ""):
        return {}
    try:
        value = json.loads(str(text))
    except ValueError as exc:
        msg = f"{where}: task attributes are not JSON"
        raise InputError(msg, field=where) from exc
    if not isinstance(value, dict):
        msg = f"{where}: task attributes must be a JSON object"
        raise InputError(msg, field=where)
    return value


def _attempt_outcome(
    mapping: OutcomeMapping,
    fields: Mapping[str, str],
    values: Mapping[str, Any],
    *,
    event_id: str,
    kind: OutcomeKind,
    scale: tuple[float, float],
    token: str | None,
    ref: str,
    fallback_at: datetime | None,
    fallback_agent: str | None,
    raw: Mapping[str, Any],
    place: str = "",
) -> Outcome | None:
    """One outcome from ``values``; None when nothing was recorded.

    ``fallback_at`` is the time when ``values`` has none (a Studio
    execution is itself the call); None makes a missing time an
    :class:`InputError` naming ``place`` + the time's path.
    """
    got = {name: get_path(values, path) for name, path in fields.items()}
    reached = mapping.boolean(got.get("reached"))
    confirmed = mapping.boolean(got.get("confirmed"))
    score = _score(got.get("score"))
    if reached is None and (confirmed is not None or score is not None):
        reached = True
    if kind == "callback_attempt" and reached is None:
        return None  # nothing recorded for this attempt
    if kind == "survey_answer" and score is None and not _opt_text(got.get("comment")):
        return None
    at_path = f"{place}{fields.get('at', 'at')}"
    if got.get("at") not in (None, ""):
        at = parse_date(got["at"], f"{ref}: {at_path}")
    elif fallback_at is not None:
        at = fallback_at
    else:
        msg = (
            f"{ref}: {at_path} is missing: the attempt has no time, and qloop does not "
            "guess when a call was made (map it with taskrouter.fields.at)"
        )
        raise InputError(msg, field=at_path)
    outcome = Outcome(
        provider_event_id=event_id,
        kind=kind,
        occurred_at=at,
        correlation_token=token,
        provider_ref=ref,
        reached=reached if kind == "callback_attempt" else None,
        confirmed=confirmed,
        score=score,
        scale=scale,
        comment=_opt_text(got.get("comment")),
        agent=_opt_text(got.get("agent")) or fallback_agent,
        raw=dict(raw),
    )
    check_outcome(outcome, ref)
    return outcome


def task_outcomes(
    mapping: OutcomeMapping,
    task_sid: str,
    attributes: Mapping[str, Any],
    *,
    at: datetime,
    worker: str | None,
    raw: Mapping[str, Any],
) -> list[Outcome]:
    """The callback attempts recorded in a finished task's attributes (oldest first).

    The attempts are the list at ``taskrouter.attempts`` or, without one,
    the outcome object at ``taskrouter.outcome`` as a single attempt. The
    outcome object's wrap-up (``taskrouter.wrapup``: confirmed, score,
    comment) goes to the attempt that reached the customer (the last one
    if several did); a comment with nobody reached goes to the last attempt.

    ``at`` (the event's time) is kept in ``raw`` only: an attempt's time
    comes from the attempt itself.

    Raises:
        InputError: an attempt without a time, a time that is not one, or a
            wrap-up with a confirmation or score when no attempt reached the
            customer; ``field`` names the attribute path at fault.
    """
    token = _opt_text(attributes.get(mapping.task_token))
    if token is None and _opt_text(attributes.get(mapping.task_key)) is None:
        return []  # not a task qloop created
    outcome = get_path(attributes, mapping.task_outcome) if mapping.task_outcome else None
    outcome = outcome if isinstance(outcome, Mapping) else None
    listed = get_path(attributes, mapping.task_attempts) if mapping.task_attempts else None
    if isinstance(listed, list) and listed:
        attempts: list[Any] = listed
        place = f"{mapping.task_attempts}[{{n}}]."
    elif outcome is not None:
        attempts = [outcome]
        place = f"{mapping.task_outcome}."
    else:
        return []
    out: list[Outcome] = []
    for n, attempt in enumerate(attempts, 1):
        if not isinstance(attempt, Mapping):
            continue
        recorded = _attempt_outcome(
            mapping,
            mapping.task_fields,
            attempt,
            event_id=f"{task_sid}#{n}",
            kind="callback_attempt",
            scale=mapping.task_scale,
            token=token,
            ref=task_sid,
            fallback_at=None,
            fallback_agent=worker,
            raw={**raw, "attempt": n, "event_at": at.isoformat()},
            place=place.format(n=n - 1),
        )
        if recorded is not None:
            out.append(recorded)
    if outcome is not None and out:
        out = _with_wrapup(mapping, task_sid, outcome, out)
    return out


def _with_wrapup(
    mapping: OutcomeMapping, task_sid: str, outcome: Mapping[str, Any], attempts: list[Outcome]
) -> list[Outcome]:
    """``attempts`` with the wrap-up's confirmed, score and comment on the reached attempt."""
    paths = mapping.task_wrapup
    got = {name: get_path(outcome, path) for name, path in paths.items()}
    confirmed = mapping.boolean(got.get("confirmed"))
    score = _score(got.get("score"))
    comment = _opt_text(got.get("comment"))
    if confirmed is None and score is None and comment is None:
        return attempts
    reached = [i for i, o in enumerate(attempts) if o.reached]
    if not reached and (confirmed is not None or score is not None):
        name = "score" if score is not None else "confirmed"
        where = f"{mapping.task_outcome}.{paths[name]}"
        msg = (
            f"{task_sid}: {where}: the wrap-up records a {name} but no attempt reached the customer"
        )
        raise InputError(msg, field=where)
    target = reached[-1] if reached else len(attempts) - 1
    chosen = attempts[target]
    attempts[target] = replace(
        chosen,
        confirmed=confirmed if confirmed is not None else chosen.confirmed,
        score=score if score is not None else chosen.score,
        comment=comment or chosen.comment,
    )
    return attempts


def taskrouter_callback_outcomes(
    mapping: OutcomeMapping, params: Mapping[str, str], workspace_sid: str
) -> list[Outcome]:
    """Outcomes of one TaskRouter event callback (form parameters); [] for other events."""
    event = params.get("EventType", "")
    if event not in TASK_DONE_EVENTS or params.get("WorkspaceSid") != workspace_sid:
        return []
    task_sid = params.get("TaskSid") or ""
    if not task_sid:
        msg = f"TaskRouter {event} callback without TaskSid"
        raise InputError(msg, field="TaskSid")
    stamp = params.get("TimestampMs") or params.get("Timestamp")
    if not stamp:
        msg = f"TaskRouter {event} callback for {task_sid} without Timestamp"
        raise InputError(msg, field="Timestamp")
    attributes = parse_attributes(params.get("TaskAttributes"), f"{task_sid}: TaskAttributes")
    raw = {
        "event_sid": params.get("Sid") or params.get("EventSid"),
        "event_type": event,
        "task_sid": task_sid,
        "assignment_status": params.get("TaskAssignmentStatus"),
        "reason": params.get("TaskCompletedReason") or params.get("TaskCanceledReason"),
        "worker_sid": params.get("WorkerSid"),
        "via": "webhook",
    }
    return task_outcomes(
        mapping,
        task_sid,
        attributes,
        at=parse_date(stamp, "Timestamp"),
        worker=_opt_text(params.get("WorkerName")),
        raw=raw,
    )


def _flat(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keys without case or underscores: ``task_sid``, ``TaskSid`` and ``taskSid`` alike."""
    return {str(k).replace("_", "").lower(): v for k, v in data.items()}


def rest_event_outcomes(mapping: OutcomeMapping, event: Mapping[str, Any]) -> list[Outcome]:
    """Outcomes of one Event resource from ``GET /v1/Workspaces/{ws}/Events``."""
    kind = str(event.get("event_type") or "")
    if kind not in TASK_DONE_EVENTS:
        return []
    data = _flat(event.get("event_data") or {})
    task_sid = str(data.get("tasksid") or event.get("resource_sid") or "")
    where = f"event {event.get('sid')}"
    if not task_sid:
        return []
    attributes = parse_attributes(data.get("taskattributes"), f"{where}: task_attributes")
    stamp = event.get("event_date_ms") or event.get("event_date")
    raw = {
        "event_sid": event.get("sid"),
        "event_type": kind,
        "task_sid": task_sid,
        "assignment_status": data.get("taskassignmentstatus"),
        "reason": data.get("taskcompletedreason") or data.get("taskcanceledreason"),
        "worker_sid": data.get("workersid"),
        "via": "poll",
    }
    return task_outcomes(
        mapping,
        task_sid,
        attributes,
        at=parse_date(stamp, f"{where}: event_date"),
        worker=_opt_text(data.get("workername")),
        raw=raw,
    )


def rejected_event(event: Mapping[str, Any], exc: InputError) -> Rejected:
    """The rejected record of a polled Event whose task outcome cannot be mapped.

    Keyed by the task SID (one record per task, as a source keys an
    incident), dated by the event, so reading it again in the overlap
    window does not count it twice.
    """
    data = _flat(event.get("event_data") or {})
    key = str(data.get("tasksid") or event.get("resource_sid") or event.get("sid") or "?")
    try:
        when: datetime | None = parse_date(
            event.get("event_date_ms") or event.get("event_date"), "event_date"
        )
    except InputError:
        when = None
    return Rejected.of(key, exc, when)


def _studio_kind(mapping: OutcomeMapping, value: Any) -> OutcomeKind:
    return "survey_answer" if str(value or "").strip().lower() == "survey" else "callback_attempt"


def studio_outcome(
    mapping: OutcomeMapping,
    execution_sid: str,
    *,
    values: Mapping[str, Any],
    token: Any,
    kind: Any,
    at: datetime,
    raw: Mapping[str, Any],
) -> Outcome | None:
    """The one outcome of a Studio execution, from its result ``values``."""
    outcome_kind = _studio_kind(mapping, kind)
    scale_key = "survey" if outcome_kind == "survey_answer" else "callback"
    return _attempt_outcome(
        mapping,
        mapping.studio_fields,
        values,
        event_id=execution_sid,
        kind=outcome_kind,
        scale=mapping.studio_scales.get(scale_key, (1.0, 5.0)),
        token=_opt_text(token),
        ref=execution_sid,
        fallback_at=at,
        fallback_agent=None,
        raw=raw,
    )


def studio_callback_outcomes(
    mapping: OutcomeMapping, values: Mapping[str, Any], received_at: datetime
) -> list[Outcome]:
    """Outcomes of a flow's Make HTTP Request callback (form or JSON values)."""
    sid = _opt_text(values.get(mapping.studio_execution))
    if sid is None:
        msg = f"Studio callback without {mapping.studio_execution!r} (the execution SID)"
        raise InputError(msg, field=mapping.studio_execution)
    outcome = studio_outcome(
        mapping,
        sid,
        values=values,
        token=values.get(mapping.studio_token),
        kind=values.get(mapping.studio_kind),
        at=received_at,
        raw={"execution_sid": sid, "via": "webhook"},
    )
    return [outcome] if outcome is not None else []


def studio_context_outcomes(
    mapping: OutcomeMapping, execution: Mapping[str, Any], context: Mapping[str, Any]
) -> list[Outcome]:
    """Outcomes of an ended execution, read from its context (the polling path)."""
    sid = str(execution.get("sid") or "")
    data = get_path(context, mapping.studio_data)
    data = data if isinstance(data, Mapping) else {}
    variables = get_path(context, mapping.studio_variables)
    variables = variables if isinstance(variables, Mapping) else {}
    outcome = studio_outcome(
        mapping,
        sid,
        values=variables,
        token=data.get(mapping.studio_token),
        kind=data.get(mapping.studio_kind),
        at=parse_date(execution.get("date_updated"), f"execution {sid}: date_updated"),
        raw={"execution_sid": sid, "status": execution.get("status"), "via": "poll"},
    )
    return [outcome] if outcome is not None else []
