"""LimeSurvey survey channel (RemoteControl 2 JSON-RPC): invitations and answers.

Importing this package registers the ``limesurvey`` channel type with its
options schema and its default mapping (``mappings/limesurvey.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.limesurvey.answers import AnswerMapping, decode_export
from connectors.limesurvey.channel import LimeSurveyChannel
from connectors.limesurvey.options import OPTIONS_SCHEMA, LimeSurveyOptions, parse_options
from connectors.limesurvey.rpc import RpcClient
from core.connector import ConnectorContext
from core.registry import register


def create_channel(
    name: str, options: Mapping[str, Any], ctx: ConnectorContext
) -> LimeSurveyChannel:
    """Registry factory of the ``limesurvey`` channel type."""
    return LimeSurveyChannel(name, options, ctx)


register("channel", "limesurvey", create_channel, OPTIONS_SCHEMA, mapping="limesurvey")

__all__ = [
    "OPTIONS_SCHEMA",
    "AnswerMapping",
    "LimeSurveyChannel",
    "LimeSurveyOptions",
    "RpcClient",
    "create_channel",
    "decode_export",
    "parse_options",
]
