"""The ``webhook`` channel type: Standard Webhooks call centres and survey systems.

Importing this package registers the type (``type: webhook`` in a channel
block). Published payload schemas: ``config/webhook/task.schema.json`` (what
qloop sends) and ``config/webhook/outcome.schema.json`` (what it accepts).
"""

from __future__ import annotations

from connectors.webhook.channel import WebhookChannel
from connectors.webhook.options import OPTIONS_SCHEMA, WebhookOptions, parse_options
from core.registry import register

register("channel", "webhook", WebhookChannel, OPTIONS_SCHEMA, mapping="webhook")

__all__ = ["OPTIONS_SCHEMA", "WebhookChannel", "WebhookOptions", "parse_options"]
