"""Lifecycle states, rules and severities as string enums (the values are what is stored).

Each member equals its string (``OutboxState.DEAD == "dead"``), so rows
written before these enums, and code that still compares strings, agree.
The API's filters list the members as OpenAPI enums.
"""

from __future__ import annotations

from enum import StrEnum


class OutboxState(StrEnum):
    """An outbox item: ``pending`` → ``sending`` (claimed) → ``sent``; ``dead`` after the
    last retry or a fatal error (replayable); ``cancelled`` when it is no longer wanted."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    CANCELLED = "cancelled"


class CallbackState(StrEnum):
    """A callback task: planned (or no contact), sent to its channel, dead-lettered,
    or superseded by a reopen."""

    PLANNED = "planned"
    NO_CONTACT = "no_contact"
    SENT = "sent"
    DEAD = "dead"
    SUPERSEDED = "superseded"


class InvitationState(StrEnum):
    """A survey invitation: planned, sent, dead-lettered, or not surveyable (no channel)."""

    PLANNED = "planned"
    NOT_SURVEYABLE = "not_surveyable"
    SENT = "sent"
    DEAD = "dead"


class NcState(StrEnum):
    """A nonconformity: open → ticketed → closed; dead when its ticket could not be
    created; withdrawn when the facts no longer support it."""

    OPEN = "open"
    TICKETED = "ticketed"
    DEAD = "dead"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class Rule(StrEnum):
    """The nonconformity rules (SPEC §10)."""

    RESPONSE_BREACH = "response_breach"
    RESOLUTION_BREACH = "resolution_breach"
    CALLBACK_MISSED = "callback_missed"
    CALLBACK_LATE = "callback_late"
    NOT_CONFIRMED = "not_confirmed"
    LOW_SATISFACTION = "low_satisfaction"


class Severity(StrEnum):
    """A nonconformity's severity (SPEC §10)."""

    MAJOR = "major"
    MINOR = "minor"


class ComplaintState(StrEnum):
    """A complaint (R5, issue 12 item 2), from its receipt to the customer's follow-up call.

    ``received`` → ``ticketed`` (its ticket exists in the ITSM) → ``acknowledged``
    (the team took the ticket) → ``analysed`` (root cause recorded) →
    ``rectified`` (rectification recorded) → ``closed`` (ticket closed; the
    follow-up call is planned) → ``followed_up`` (the customer was reached).
    """

    RECEIVED = "received"
    TICKETED = "ticketed"
    ACKNOWLEDGED = "acknowledged"
    ANALYSED = "analysed"
    RECTIFIED = "rectified"
    CLOSED = "closed"
    FOLLOWED_UP = "followed_up"
