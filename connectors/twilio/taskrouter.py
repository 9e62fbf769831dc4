"""``twilio_taskrouter``: callback tasks for human agents, routed by TaskRouter.

``send`` creates one Task per callback in the workspace (attributes: the
incident, the correlation token, the phone to call, the due time; Timeout
= the callback window; TaskChannel voice), after searching the workspace
for a task already holding the message's idempotency key
(``EvaluateTaskAttributes``): a create whose reply was lost is found, not
repeated. The agent records the outcome in the task's attributes and
completes it (see ``mappings/twilio.yaml``).

Outcomes arrive as TaskRouter event callbacks (``receive``) and, as a
safety net, by polling the workspace's Event resource (``collect``):
completed and canceled tasks are queued for deletion by TaskRouter, so the
Tasks list cannot be relied on after the fact, while Events keep the task
attributes for 30 days and filter by type and date. A task whose outcome
cannot be mapped (an attempt without a time…) is rejected with the path
at fault: polled, it goes to the rejected records and the other tasks go
on; pushed, the callback is answered 400 and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.twilio.base import TwilioChannelBase
from connectors.twilio.events import (
    rejected_event,
    rest_event_outcomes,
    taskrouter_callback_outcomes,
)
from connectors.twilio.options import TASKROUTER_OPTIONS_SCHEMA
from connectors.twilio.rest import iso_z
from core.errors import InputError, RetriableError
from core.records import CollectedBatch, OutboundMessage, Outcome, Rejected, SendResult

POLLED_EVENTS = ("task.completed", "task.canceled")


class TaskRouterChannel(TwilioChannelBase):
    """A callback channel on a TaskRouter workspace (options: ``TASKROUTER_OPTIONS_SCHEMA``)."""

    schema = TASKROUTER_OPTIONS_SCHEMA
    product = "TaskRouter"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kinds = frozenset({"callback"})
        self.workspace = str(self.opts["workspace_sid"])
        self.tasks_path = f"/v1/Workspaces/{self.workspace}/Tasks"
        self.events_path = f"/v1/Workspaces/{self.workspace}/Events"

    def attributes(self, message: OutboundMessage, phone: str) -> dict[str, Any]:
        """The task's attributes: flat keys, so EvaluateTaskAttributes can search them."""
        return {
            "type": "qloop_callback",
            self.mapping.task_key: message.idempotency_key,
            self.mapping.task_token: message.correlation_token,
            "qloop_source": message.source,
            "incident_key": message.incident_key,
            "incident_external_id": message.incident_external_id,
            "title": message.title,
            "priority": message.priority,
            "to": phone,
            "name": message.contact.name,
            "customer": message.customer,
            "service": message.service,
            "resolved_at": iso_z(message.resolved_at),
            "due_at": iso_z(message.due_at) if message.due_at else None,
        }

    def send(self, message: OutboundMessage) -> SendResult:
        """Create the callback task unless the workspace already holds its idempotency key.

        Raises:
            FatalError: not a callback, no usable phone, or Twilio refused the task.
            RetriableError: Twilio unavailable or the reply was lost (send
                again: the search finds a task that was created).
        """
        phone = self.check_message(message)
        found = self.lookup(message.idempotency_key)
        if found is not None:
            return found
        form = {
            "WorkflowSid": self.opts["workflow_sid"],
            "TaskChannel": self.opts["task_channel"],
            "Timeout": int(self.opts["task_timeout"]),
            "Attributes": json.dumps(self.attributes(message, phone), ensure_ascii=False),
        }
        task = self.rest.create(self.tasks_path, form)
        sid = task.get("sid")
        if not isinstance(sid, str) or not sid:
            msg = f"{self.rest.http.name}: POST {self.tasks_path}: the reply has no task sid"
            raise RetriableError(msg, connector=self.name)
        return SendResult(provider_ref=sid)

    def lookup(self, idempotency_key: str) -> SendResult | None:
        """The task holding ``idempotency_key`` (the oldest if several), or None.

        Tasks are searched with ``EvaluateTaskAttributes``; a task already
        completed and deleted by TaskRouter is not found.
        """
        expression = f"{self.mapping.task_key} == {json.dumps(idempotency_key)}"
        params = [
            ("EvaluateTaskAttributes", expression),
            ("Ordering", "DateCreated:asc"),
            ("PageSize", "20"),
        ]
        for page in self.rest.pages(self.tasks_path, "tasks", params):
            for task in page:
                if task.get("sid"):
                    return SendResult(provider_ref=str(task["sid"]))
        return None

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        """Outcomes of tasks completed or canceled since ``cursor`` (from the Event resource).

        Every page is yielded with the old cursor; the last batch moves the
        cursor to the end of the window read (an ISO instant), so a crash
        re-reads at most one window (duplicates are harmless).
        """
        start, end = self.window(cursor)
        for event_type in POLLED_EVENTS:
            params = [
                ("EventType", event_type),
                ("StartDate", iso_z(start)),
                ("EndDate", iso_z(end)),
                ("PageSize", str(self.opts["page_size"])),
            ]
            for page in self.rest.pages(self.events_path, "events", params):
                outcomes: list[Outcome] = []
                rejected: list[Rejected] = []
                for event in page:
                    try:
                        outcomes.extend(rest_event_outcomes(self.mapping, event))
                    except InputError as exc:  # one task's record: the others go on
                        rejected.append(rejected_event(event, exc))
                yield CollectedBatch(outcomes=outcomes, cursor=cursor, rejected=rejected)
        yield CollectedBatch(outcomes=[], cursor=iso_z(end))

    def receive(self, headers: Mapping[str, str], body: bytes, url: str) -> Sequence[Outcome]:
        """Verify one event callback and return the outcomes it carries (often none).

        Raises:
            InputError: forged or missing signature, a JSON body, or a
                task event without its task SID, time or valid attributes.
        """
        is_json, params = self.verified(headers, body, url)
        if is_json:
            msg = "TaskRouter event callback: expected form parameters, got JSON"
            raise InputError(msg, field="body")
        return taskrouter_callback_outcomes(self.mapping, dict(params), self.workspace)

    def probe(self) -> list[str]:
        """The workspace's name and its default timeouts (checks credentials and SIDs)."""
        ws = self.rest.get(f"/v1/Workspaces/{self.workspace}")
        workflow = self.rest.get(
            f"/v1/Workspaces/{self.workspace}/Workflows/{self.opts['workflow_sid']}"
        )
        return [
            f"workspace {self.workspace}: {ws.get('friendly_name')}",
            f"event callback URL: {ws.get('event_callback_url') or '(none: polling only)'}",
            f"workflow {workflow.get('sid')}: {workflow.get('friendly_name')}",
        ]
