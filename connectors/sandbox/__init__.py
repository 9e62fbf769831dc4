"""Sandbox connectors: a generated ITSM source and a simulated callback/survey channel.

They behave like remote systems — state persisted across processes,
occasional retriable failures, idempotent writes — so the real loop can
run against them in demos, tests and benchmarks.
"""

from __future__ import annotations

import dataclasses

from connectors.sandbox.channel import CHANNEL_OPTIONS_SCHEMA, SandboxChannel
from connectors.sandbox.generator import generate_incidents
from connectors.sandbox.source import SOURCE_OPTIONS_SCHEMA, SandboxSource
from core.conf import AppConfig
from core.registry import register

register("source", "sandbox", SandboxSource, SOURCE_OPTIONS_SCHEMA, mapping="sandbox")
register("channel", "sandbox", SandboxChannel, CHANNEL_OPTIONS_SCHEMA)


def without_failures(cfg: AppConfig) -> AppConfig:
    """``cfg`` with every source's and channel's injected failures off (``failure_rate: 0``).

    For benchmarks and tests that measure qloop rather than the sandbox's
    retriable failures and their retry waits.
    """
    return dataclasses.replace(
        cfg,
        sources={
            k: dataclasses.replace(v, options={**v.options, "failure_rate": 0})
            for k, v in cfg.sources.items()
        },
        channels={
            k: dataclasses.replace(v, options={**v.options, "failure_rate": 0})
            for k, v in cfg.channels.items()
        },
    )


__all__ = [
    "CHANNEL_OPTIONS_SCHEMA",
    "SOURCE_OPTIONS_SCHEMA",
    "SandboxChannel",
    "SandboxSource",
    "generate_incidents",
    "without_failures",
]
