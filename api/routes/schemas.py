"""What the API answers: one public schema per resource (no tokens, no secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Out(BaseModel):
    """Base of the answers: built from ORM rows by attribute."""

    model_config = ConfigDict(from_attributes=True)


class ContactOut(BaseModel):
    """A customer's contact details, masked unless the caller may see them."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None


class IncidentOut(Out):
    id: int
    source: str
    key: str
    external_id: str
    title: str
    service: str | None
    customer: str | None
    contact: ContactOut
    priority: str
    status: str
    category: str
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    source_sla: dict[str, Any]


class StatusEventOut(Out):
    seq: int
    at: datetime
    status: str
    category: str
    observed: bool


class CallbackOut(Out):
    id: int
    incident_id: int
    resolution_at: datetime
    due_at: datetime
    channel: str | None
    state: str
    provider_ref: str | None
    created_at: datetime


class SurveyOut(Out):
    id: int
    incident_id: int
    stratum: str
    channel: str | None
    state: str
    provider_ref: str | None
    created_at: datetime


class MatchOut(Out):
    status: str
    incident_id: int | None
    method: str | None
    reason: str | None
    decided_at: datetime
    decided_by: str


class ResponseOut(Out):
    id: int
    channel: str
    provider_event_id: str
    kind: str
    occurred_at: datetime
    received_at: datetime
    contact: ContactOut
    reached: bool | None
    confirmed: bool | None
    score_raw: float | None
    scale_min: float
    scale_max: float
    score: float | None
    comment: str | None
    agent: str | None
    match: MatchOut | None = None


class ComplianceOut(Out):
    policy: str
    policy_version: str
    evaluated_at: datetime
    month: str | None
    cancelled: bool
    first_response_at: datetime | None
    resolved_at: datetime | None
    reopen_count: int
    response_s: int | None
    response_target_s: int | None
    response_met: bool | None
    resolution_s: int | None
    resolution_target_s: int | None
    resolution_met: bool | None
    callback_verdict: str | None
    callback_due: datetime | None
    confirmed: bool | None
    callback_score: float | None
    survey_score: float | None
    source_response_met: bool | None
    source_resolution_met: bool | None
    sla_disagreement: str | None
    findings: list[Any]


class NonconformityOut(Out):
    id: int
    incident_id: int
    rule: str
    severity: str
    state: str
    raised_at: datetime
    deadline: datetime
    detail: str
    policy: str
    policy_version: str
    ticket_target: str
    ticket_ref: str | None
    ticket_url: str | None
    ticket_status: str | None
    closed_at: datetime | None
    overdue: bool
    updated_at: datetime


class IncidentDetail(IncidentOut):
    status_history: list[StatusEventOut]
    callbacks: list[CallbackOut]
    survey: SurveyOut | None
    responses: list[ResponseOut]
    compliance: list[ComplianceOut]
    nonconformities: list[NonconformityOut]
    raw: dict[str, Any] | None = Field(
        None, description="The source's payload; only for callers who may see contact details."
    )


class ReviewItemOut(BaseModel):
    id: int = Field(description="The review item (match) id.")
    reason: str | None
    candidates: list[int]
    decided_at: datetime
    response: ResponseOut


class Page(BaseModel, Generic[T]):
    """One page; pass ``next_cursor`` as ``cursor`` for the next (null: last page)."""

    items: list[T]
    next_cursor: str | None


class SyncRunOut(Out):
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    cursor_before: str | None
    cursor_after: str | None
    seen: int
    created: int
    updated: int
    unchanged: int
    errors: int
    error: str | None
    tool_count: int | None = Field(
        None, description="After a first sync: how many records the tool counts in scope."
    )
    skipped_own: int = Field(0, description="qloop's own nonconformity tickets left out.")


class ConnectorOut(BaseModel):
    name: str
    type: str
    enabled: bool
    schedule: str
    cursor: str | None
    last_run_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    last_run: SyncRunOut | None


class SourceOut(ConnectorOut):
    policy: str
    first_sync: SyncRunOut | None = Field(
        None,
        description="The last first sync (empty cursor) with the tool's own count "
        "(tool_count) to compare with what it read (seen + rejected + skipped_own).",
    )
    rejected_open: int = Field(
        0, description="Records of this source that could not be mapped and are not resolved."
    )


class RejectedOut(Out):
    """A source record that could not be mapped (``qloop sources rejects``)."""

    id: int
    source: str
    key: str
    field: str | None
    error: str
    source_updated_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime
    times: int
    resolved_at: datetime | None


class ChannelOut(ConnectorOut):
    receives_webhooks: bool


class SyncTriggered(BaseModel):
    run_id: str
    source: str
    mode: Literal["queued", "embedded"]
    already_running: bool = False


class SyncStatus(BaseModel):
    run_id: str
    source: str
    status: Literal["running", "ok", "failed", "skipped"]
    started_at: datetime
    finished_at: datetime | None
    results: list[str]
    error: str | None


class MatchRequest(BaseModel):
    incident_id: int = Field(ge=1)
    note: str | None = Field(None, max_length=2000)


class DismissRequest(BaseModel):
    note: str | None = Field(None, max_length=2000)


class ReviewResolved(BaseModel):
    id: int
    status: str
    incident_id: int | None
    decided_by: str


class Accepted(BaseModel):
    """Outcomes stored (committed) for a channel."""

    channel: str
    received: int
    created: int
    duplicates: int


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    redis: str | None
