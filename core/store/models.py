"""Canonical records (SPEC §6) as typed SQLAlchemy 2.x models.

Every instant is an aware UTC :class:`UTCDateTime`. Uniqueness constraints
carry the idempotency promises: one incident per (source, external id),
one callback task per resolution, one survey invitation per incident, one
response per (channel, provider event), one nonconformity per dedup key,
one outbox item per idempotency key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.limits import EMAIL_MAX, EVENT_ID_MAX, NAME_MAX, PHONE_MAX, REF_MAX, TOKEN_MAX
from core.states import CallbackState, InvitationState, NcState, OutboxState, Rule, Severity
from core.store.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class SourceState(Base):
    """The pull cursor and last outcome per source (or ``channel:<name>`` for channels)."""

    __tablename__ = "connector_state"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    last_run_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    tracking_from: Mapped[datetime | None]
    """Sources: no callback or survey for resolutions whose callback is due before it (§11)."""
    collected_until: Mapped[datetime | None]
    """Channels: every outcome that occurred before this instant has been collected."""


class SyncRun(Base):
    """One pull of a source or collect of a channel: cursors, counts, errors."""

    __tablename__ = "sync_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))
    cursor_before: Mapped[str | None] = mapped_column(Text)
    cursor_after: Mapped[str | None] = mapped_column(Text)
    seen: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    tool_count: Mapped[int | None]
    """How many records the tool itself says are in scope (checked after a first sync)."""
    skipped_own: Mapped[int] = mapped_column(default=0)
    """Records skipped because qloop created them (its own nonconformity tickets)."""


class Incident(Base):
    """An incident as last pulled, with qloop's bookkeeping revisions.

    ``revision`` grows on every change that can alter a verdict (new data
    from the source, a matched answer); ``planned_revision`` says how far the
    plan step got, :class:`IncidentEvaluation` how far the evaluate step got.
    """

    __tablename__ = "incident"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_incident_source_external"),
        Index("ix_incident_plan", "planned_revision", "revision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(200))
    customer: Mapped[str | None] = mapped_column(String(200))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_phone: Mapped[str | None] = mapped_column(String(100))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    phone_key: Mapped[str | None] = mapped_column(String(100), index=True)
    email_key: Mapped[str | None] = mapped_column(String(320), index=True)
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    source_sla: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[datetime]
    changed_at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(default=1)
    planned_revision: Mapped[int] = mapped_column(default=0)


class IncidentEvaluation(Base):
    """How far the evaluate step got with an incident (none yet: never evaluated).

    ``evaluated_revision`` is the incident's revision it last evaluated;
    ``evaluate_after`` when a pending verdict falls due (evaluate again then).
    Kept beside the incident, not on its wide row: the step writes it for
    every incident it evaluates.
    """

    __tablename__ = "incident_evaluation"
    __table_args__ = (
        Index(
            "ix_incident_evaluation_evaluate_after",
            "evaluate_after",
            sqlite_where=text("evaluate_after IS NOT NULL"),
            postgresql_where=text("evaluate_after IS NOT NULL"),
        ),
    )
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    evaluated_revision: Mapped[int]
    evaluate_after: Mapped[datetime | None]


class StatusEvent(Base):
    """One entry of an incident's status history, in order."""

    __tablename__ = "status_event"
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_status_event_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    seq: Mapped[int]
    at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(20))
    observed: Mapped[bool] = mapped_column(default=False)


class CallbackTask(Base):
    """The phone callback owed for one resolution of an incident (R1)."""

    __tablename__ = "callback_task"
    __table_args__ = (
        UniqueConstraint("incident_id", "resolution_at", name="uq_callback_resolution"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    resolution_at: Mapped[datetime]
    due_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(200))
    correlation_token: Mapped[str] = mapped_column(String(TOKEN_MAX), unique=True)
    state: Mapped[CallbackState] = mapped_column(String(20))
    provider_ref: Mapped[str | None] = mapped_column(String(REF_MAX), index=True)
    created_at: Mapped[datetime]


class SampleRun(Base):
    """The survey sample drawn for one policy and month (R3), with its report."""

    __tablename__ = "sample_run"
    __table_args__ = (
        UniqueConstraint("policy", "month", "draw", name="uq_sample_policy_month_draw"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    policy: Mapped[str] = mapped_column(String(200))
    month: Mapped[str] = mapped_column(String(7))
    draw: Mapped[int] = mapped_column(default=0)
    """0 for the month's first draw, then 1, 2, … for top-up draws over newcomers."""
    seed: Mapped[str] = mapped_column(String(200))
    rate: Mapped[float] = mapped_column(Float)
    population: Mapped[int]
    picked: Mapped[int]
    strata: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]


class SurveyInvitation(Base):
    """A survey invitation for a sampled incident, or the record that it could not be sent."""

    __tablename__ = "survey_invitation"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), unique=True
    )
    sample_run_id: Mapped[int | None] = mapped_column(ForeignKey("sample_run.id"))
    stratum: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(200))
    correlation_token: Mapped[str] = mapped_column(String(TOKEN_MAX), unique=True)
    state: Mapped[InvitationState] = mapped_column(String(20))
    provider_ref: Mapped[str | None] = mapped_column(String(REF_MAX), index=True)
    created_at: Mapped[datetime]


class Response(Base):
    """One answer received from a channel: a callback attempt or a survey answer."""

    __tablename__ = "response"
    __table_args__ = (UniqueConstraint("channel", "provider_event_id", name="uq_response_event"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(200))
    provider_event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX))
    kind: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    correlation_token: Mapped[str | None] = mapped_column(String(TOKEN_MAX), index=True)
    provider_ref: Mapped[str | None] = mapped_column(String(REF_MAX))
    contact_phone: Mapped[str | None] = mapped_column(String(PHONE_MAX))
    contact_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    reached: Mapped[bool | None] = mapped_column(Boolean)
    confirmed: Mapped[bool | None] = mapped_column(Boolean)
    score_raw: Mapped[float | None] = mapped_column(Float)
    scale_min: Mapped[float] = mapped_column(Float, default=1.0)
    scale_max: Mapped[float] = mapped_column(Float, default=5.0)
    score: Mapped[float | None] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str | None] = mapped_column(String(NAME_MAX))
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    matched: Mapped[bool] = mapped_column(default=False, index=True)


class Match(Base):
    """How a response was tied to an incident, or why it waits for review."""

    __tablename__ = "match"
    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(
        ForeignKey("response.id", ondelete="CASCADE"), unique=True
    )
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), index=True)
    method: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    decided_at: Mapped[datetime]
    decided_by: Mapped[str] = mapped_column(String(200), default="qloop")


class ComplianceRecord(Base):
    """The facts and verdicts of one incident under one policy version (SPEC §10)."""

    __tablename__ = "compliance_record"
    __table_args__ = (
        UniqueConstraint("incident_id", "policy", "policy_version", name="uq_compliance_version"),
        Index("ix_compliance_month", "policy", "month"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    policy: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(40))
    evaluated_at: Mapped[datetime]
    month: Mapped[str | None] = mapped_column(String(7))
    cancelled: Mapped[bool] = mapped_column(default=False)
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(default=0)
    response_s: Mapped[int | None]
    response_target_s: Mapped[int | None]
    response_met: Mapped[bool | None] = mapped_column(Boolean)
    resolution_s: Mapped[int | None]
    resolution_target_s: Mapped[int | None]
    resolution_met: Mapped[bool | None] = mapped_column(Boolean)
    callback_verdict: Mapped[str | None] = mapped_column(String(20))
    callback_due: Mapped[datetime | None]
    confirmed: Mapped[bool | None] = mapped_column(Boolean)
    callback_score: Mapped[float | None] = mapped_column(Float)
    survey_score: Mapped[float | None] = mapped_column(Float)
    source_response_met: Mapped[bool | None] = mapped_column(Boolean)
    source_resolution_met: Mapped[bool | None] = mapped_column(Boolean)
    sla_disagreement: Mapped[str | None] = mapped_column(String(100))
    resolutions: Mapped[list[Any]] = mapped_column(default=list)
    findings: Mapped[list[Any]] = mapped_column(default=list)
    raised: Mapped[bool] = mapped_column(default=False, index=True)
    as_of: Mapped[datetime | None]
    """The evaluation instant the verdicts were computed as of (SPEC §10)."""
    qloop_version: Mapped[str | None] = mapped_column(String(40))
    holidays_version: Mapped[str | None] = mapped_column(String(40))


class Nonconformity(Base):
    """A nonconformity (R5) and the rectification ticket that tracks it (R6)."""

    __tablename__ = "nonconformity"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(400), unique=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    rule: Mapped[Rule] = mapped_column(String(40))
    resolution_key: Mapped[str] = mapped_column(String(40))
    severity: Mapped[Severity] = mapped_column(String(10))
    raised_at: Mapped[datetime]
    deadline: Mapped[datetime]
    detail: Mapped[str] = mapped_column(Text)
    evidence_ref: Mapped[str | None] = mapped_column(String(200))
    policy: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(40))
    state: Mapped[NcState] = mapped_column(String(20), index=True)
    """An :class:`~core.states.NcState` value (typed ``str`` until core/loop/nonconformities.py
    assigns the enum's members instead of bare strings)."""
    ticket_target: Mapped[str] = mapped_column(String(200))
    ticket_ref: Mapped[str | None] = mapped_column(String(200))
    ticket_url: Mapped[str | None] = mapped_column(Text)
    ticket_status: Mapped[str | None] = mapped_column(String(100))
    closed_at: Mapped[datetime | None]
    overdue: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    revision: Mapped[int] = mapped_column(default=1)
    """Grows with every change of severity, raised-at, deadline, detail or state."""
    withdrawn_at: Mapped[datetime | None]


class NonconformityEvent(Base):
    """One change of a nonconformity (raised, updated, withdrawn, reinstated), kept for audits."""

    __tablename__ = "nonconformity_event"
    __table_args__ = (
        UniqueConstraint("nonconformity_id", "revision", name="uq_nc_event_revision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    nonconformity_id: Mapped[int] = mapped_column(
        ForeignKey("nonconformity.id", ondelete="CASCADE")
    )
    revision: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Field → [before, after] (instants as ISO strings)."""
    reason: Mapped[str] = mapped_column(Text)


class OutboxItem(Base):
    """An intent to send, committed before it is sent (SPEC §3 push).

    States: ``pending`` → ``sending`` (claimed) → ``sent``; ``dead`` after the
    last retry or a fatal error (replayable).
    """

    __tablename__ = "outbox_item"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(200))
    entity_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[OutboxState] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class AuditLog(Base):
    """Who did what to which record, for audits (R8)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(100))
    entity_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobLease(Base):
    """Who runs a job now (``workers/guard.py``): one row per job key, held until ``expires_at``.

    A worker takes the row atomically before a step (insert, or take over a
    row whose lease has expired), renews it while the step runs and deletes
    it at the end; a worker killed mid-step leaves the row to expire.
    """

    __tablename__ = "job_lease"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class RejectedRecord(Base):
    """A source record that could not be mapped, kept aside so its source goes on.

    One row per (source, key), however often the same record comes back;
    ``resolved_at`` is set when a later version of it maps and is stored.
    The source keeps the payload: after fixing the mapping, a resync reads
    the record again.
    """

    __tablename__ = "rejected_record"
    __table_args__ = (UniqueConstraint("source", "key", name="uq_rejected_source_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    field: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    source_updated_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    times: Mapped[int] = mapped_column(default=1)
    """How many versions of the record were rejected (the same one read twice counts once)."""
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)


class WebSessionEnd(Base):
    """A QA web page session signed out before its expiry: refused by every server process.

    Rows past ``expires_at`` are useless (the cookie has expired anyway) and
    are deleted when another session ends.
    """

    __tablename__ = "web_session_end"
    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SentReport(Base):
    """One monthly report sent to one recipient (issue 11 item 2): who, when, which bytes.

    Unique per (period, recipient, via, format, lang): the delivery job claims
    the row (``state`` ``sending``) before it sends and marks it ``sent``
    after, so a re-run of the job sends nothing twice.
    """

    __tablename__ = "sent_report"
    __table_args__ = (
        UniqueConstraint("period", "recipient", "via", "format", "lang", name="uq_sent_report"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7))
    recipient: Mapped[str] = mapped_column(String(400))
    via: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(10))
    lang: Mapped[str] = mapped_column(String(10))
    as_of: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    attachment: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    claimed_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Campaign(Base):
    """A company-level survey campaign's plan and lifecycle (R3, issue 12 item 1).

    ``state``: ``planned`` (frame and sample stored, nothing sent) →
    ``launched`` (invitations in the outbox) → ``closed``. ``strata`` holds the
    plan's report per stratum (size, picked, planned coverage).
    """

    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    state: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(200))
    survey_id: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[str] = mapped_column(String(200))
    rate: Mapped[float] = mapped_column(Float)
    min_per_stratum: Mapped[int]
    window_from: Mapped[str] = mapped_column(String(10))
    window_to: Mapped[str] = mapped_column(String(10))
    frame_size: Mapped[int]
    excluded: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Why people with incidents in the window are not in the frame: reason → count."""
    picked: Mapped[int]
    strata: Mapped[list[Any]] = mapped_column(default=list)
    planned_at: Mapped[datetime]
    launched_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    questionnaire: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The configured items, comment questions and previous campaign, as of the last
    plan or collection: the results report reads them from here (stored facts)."""


class CampaignMember(Base):
    """One person of a campaign's frame: picked or not, invited, reminded, answered.

    ``state`` of a picked member: ``planned`` → ``sent`` (or ``dead``) through
    the outbox (kind ``campaign_invite``), ``not_surveyable`` when the channel
    cannot reach them; members not picked stay ``framed``.
    """

    __tablename__ = "campaign_member"
    __table_args__ = (
        UniqueConstraint("campaign_id", "person_key", name="uq_campaign_member_person"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), index=True
    )
    person_key: Mapped[str] = mapped_column(String(400))
    keys: Mapped[list[Any]] = mapped_column(default=list)
    """Every contact key of the person (``email:…``, ``phone:…``), for cool-off and opt-out."""
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id", ondelete="SET NULL"))
    """The person's latest incident in the window (its stratum and contact details)."""
    incidents: Mapped[int]
    stratum: Mapped[str] = mapped_column(Text)
    picked: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20))
    correlation_token: Mapped[str] = mapped_column(String(TOKEN_MAX), unique=True)
    provider_ref: Mapped[str | None] = mapped_column(String(REF_MAX))
    invited_at: Mapped[datetime | None]
    reminders: Mapped[int] = mapped_column(default=0)
    reminded_at: Mapped[datetime | None]
    responded_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class CampaignAnswer(Base):
    """One complete response to a campaign's questionnaire, tied to its member by token.

    ``values`` keeps the answers as the channel gave them (question code →
    answer code), so the report maps them to the configured items and a
    changed mapping needs no new collection. One row per response id.
    """

    __tablename__ = "campaign_answer"
    __table_args__ = (
        UniqueConstraint("campaign_id", "response_id", name="uq_campaign_answer_response"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_member.id", ondelete="CASCADE"), index=True
    )
    response_id: Mapped[str] = mapped_column(String(REF_MAX))
    submitted_at: Mapped[datetime | None]
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)
    collected_at: Mapped[datetime]


class ContactOptOut(Base):
    """A person who asked not to be surveyed: no campaign frames them again."""

    __tablename__ = "contact_opt_out"
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_key: Mapped[str] = mapped_column(String(400), unique=True)
    """``email:<normalised address>`` or ``phone:<normalised number>``."""
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Complaint(Base):
    """A complaint (R5): a major nonconformity, or an incident a source or channel flags.

    One per incident (``key``); ``origin`` says what made it one first
    (``nonconformity``, ``source``, ``channel``) and ``origins`` every reason
    seen since. Its ticket is its nonconformity's, else one of its own
    (outbox kind ``complaint_ticket``). Root cause and rectification are read
    back from the ticket; once the ticket is closed a follow-up call to the
    customer is planned once (``follow_up_token``); past ``deadline`` without
    a closed, rectified ticket it is escalated once (``escalated_at``).
    """

    __tablename__ = "complaint"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    nonconformity_id: Mapped[int | None] = mapped_column(
        ForeignKey("nonconformity.id", ondelete="SET NULL")
    )
    origin: Mapped[str] = mapped_column(String(20))
    origins: Mapped[list[Any]] = mapped_column(default=list)
    detail: Mapped[str] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), index=True)
    received_at: Mapped[datetime]
    deadline: Mapped[datetime]
    ticket_target: Mapped[str] = mapped_column(String(200))
    ticket_ref: Mapped[str | None] = mapped_column(String(200))
    ticket_url: Mapped[str | None] = mapped_column(Text)
    ticket_status: Mapped[str | None] = mapped_column(String(100))
    notified_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    root_cause: Mapped[str | None] = mapped_column(Text)
    root_cause_at: Mapped[datetime | None]
    rectification: Mapped[str | None] = mapped_column(Text)
    rectified_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    follow_up_channel: Mapped[str | None] = mapped_column(String(200))
    follow_up_token: Mapped[str | None] = mapped_column(String(TOKEN_MAX), unique=True)
    follow_up_planned_at: Mapped[datetime | None]
    follow_up_reached_at: Mapped[datetime | None]
    follow_up_outcome: Mapped[dict[str, Any]] = mapped_column(default=dict)
    escalated_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ComplaintEvent(Base):
    """One change of a complaint (received, ticketed, root cause…), kept for audits."""

    __tablename__ = "complaint_event"
    __table_args__ = (
        UniqueConstraint("complaint_id", "revision", name="uq_complaint_event_revision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaint.id", ondelete="CASCADE"))
    revision: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Field → [before, after] (instants as ISO strings)."""
    reason: Mapped[str] = mapped_column(Text)
