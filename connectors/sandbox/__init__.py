"""Sandbox connectors: a generated ITSM source and a simulated callback/survey channel.

They behave like remote systems — state persisted across processes,
occasional retriable failures, idempotent writes — so the real loop can
run against them in demos, tests and benchmarks.
"""

from __future__ import annotations

from connectors.sandbox.channel import CHANNEL_OPTIONS_SCHEMA, SandboxChannel
from connectors.sandbox.generator import generate_incidents
from connectors.sandbox.source import SOURCE_OPTIONS_SCHEMA, SandboxSource
from core.registry import register

register("source", "sandbox", SandboxSource, SOURCE_OPTIONS_SCHEMA, mapping="sandbox")
register("channel", "sandbox", SandboxChannel, CHANNEL_OPTIONS_SCHEMA)

__all__ = [
    "CHANNEL_OPTIONS_SCHEMA",
    "SOURCE_OPTIONS_SCHEMA",
    "SandboxChannel",
    "SandboxSource",
    "generate_incidents",
]
