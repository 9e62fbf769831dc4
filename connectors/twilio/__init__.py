"""Twilio channels: TaskRouter tasks for human callbacks, Studio executions for automated ones.

Registers ``twilio_taskrouter`` (kinds: callback) and ``twilio_studio``
(kinds: callback, survey), both with the default outcome mapping
``mappings/twilio.yaml``. REST is spoken directly through
:class:`connectors.http.HttpService` (no Twilio SDK).
"""

from __future__ import annotations

from connectors.twilio.options import STUDIO_OPTIONS_SCHEMA, TASKROUTER_OPTIONS_SCHEMA
from connectors.twilio.studio import StudioChannel
from connectors.twilio.taskrouter import TaskRouterChannel
from core.registry import register

register(
    "channel", "twilio_taskrouter", TaskRouterChannel, TASKROUTER_OPTIONS_SCHEMA, mapping="twilio"
)
register("channel", "twilio_studio", StudioChannel, STUDIO_OPTIONS_SCHEMA, mapping="twilio")

__all__ = [
    "STUDIO_OPTIONS_SCHEMA",
    "TASKROUTER_OPTIONS_SCHEMA",
    "StudioChannel",
    "TaskRouterChannel",
]
