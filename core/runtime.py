"""The runtime: a validated config, the store, policies and live connectors.

Every loop step takes a :class:`Runtime` plus plain names or ids. A worker
process builds one runtime and reuses it; embedded mode builds one for
the whole process. Connector types must be registered (``import
connectors``) before a connector is first used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import mappings
from core import registry
from core.calendar import BusinessCalendar
from core.compliance import Policy
from core.conf import AppConfig, CalendarConfig, PolicyConfig, SourceConfig
from core.conf.masking import leaf_secret_values, remember_secrets
from core.connector import Channel, ConnectorContext, Source
from core.errors import ConfigError
from core.mapping import merge_mapping
from core.retry import call_with_retry, make_retrying
from core.store import Database, open_database
from core.timeutil import utcnow

log = logging.getLogger("qloop")
T = TypeVar("T")


def build_calendar(cfg: CalendarConfig) -> BusinessCalendar:
    return BusinessCalendar(
        name=cfg.name,
        timezone=cfg.timezone,
        hours=cfg.hours,
        country=cfg.country,
        subdiv=cfg.subdiv,
        holidays=cfg.holidays,
        extra_workdays=cfg.extra_workdays,
        adjusted_day_hours=cfg.adjusted_day_hours,
    )


def build_policy(cfg: PolicyConfig, calendar: BusinessCalendar) -> Policy:
    return Policy(
        name=cfg.name,
        calendar=calendar,
        response_targets=cfg.response,
        resolution_targets=cfg.resolution,
        version=cfg.version,
        callback_within_s=cfg.callback_within_s,
        callback_min_attempts=cfg.callback_min_attempts,
        low_score_below=cfg.low_score_below,
        major_score_at_most=cfg.major_score_at_most,
        major_priorities=cfg.major_priorities,
        rectify_working_days=cfg.rectify_working_days,
    )


@dataclass
class Runtime:
    """What the loop steps need, built once per process."""

    config: AppConfig
    db: Database
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    """How retries wait; tests pass one that advances their fake clock."""
    on_progress: Callable[[str, int], None] | None = None
    """Called by long steps with their name and how many items they have done."""
    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    _sources: dict[str, Source] = field(default_factory=dict)
    _channels: dict[str, Channel] = field(default_factory=dict)
    _mappings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # masked in every error and log line of this process, in any encoding
        remember_secrets(leaf_secret_values(self.config.data, self.config.secret_paths))
        for name, cal in self.config.calendars.items():
            self.calendars[name] = build_calendar(cal)
        for name, pol in self.config.policies.items():
            self.policies[name] = build_policy(pol, self.calendars[pol.calendar])

    def now(self) -> datetime:
        return self.clock()

    def report(self, step: str, done: int) -> None:
        """Tell the progress display how far a long step is."""
        if self.on_progress is not None:
            self.on_progress(step, done)

    def call(self, fn: Callable[[], T]) -> T:
        """Call a connector under the retry policy (Retry-After honoured), waiting by ``sleep``."""
        return call_with_retry(fn, make_retrying(sleep=self.sleep))

    def policy(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            msg = f"unknown policy {name!r}; known: {', '.join(sorted(self.policies))}"
            raise ConfigError(msg) from None

    def policy_for_source(self, source: str) -> Policy:
        return self.policy(self.config.sources[source].policy)

    def _mapping(
        self, kind: registry.Kind, type_name: str, override: dict[str, Any]
    ) -> dict[str, Any]:
        ctype = registry.get(kind, type_name)
        base = mappings.load(ctype.mapping) if ctype.mapping else {}
        return merge_mapping(base, override or {})

    def source_mapping(self, name: str) -> dict[str, Any]:
        """The effective mapping of source ``name`` (defaults merged with overrides)."""
        if name not in self._mappings:
            cfg = self.config.sources[name]
            self._mappings[name] = self._mapping("source", cfg.type, cfg.mapping)
        return self._mappings[name]

    def _context(self, mapping: dict[str, Any]) -> ConnectorContext:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        return ConnectorContext(
            state_dir=self.config.state_dir, mapping=mapping, clock=self.clock, sleep=self.sleep
        )

    def source_config(self, name: str) -> SourceConfig:
        """Source ``name``'s configuration; an unknown name is an error listing the known ones."""
        try:
            return self.config.sources[name]
        except KeyError:
            msg = f"unknown source {name!r}; known: {', '.join(sorted(self.config.sources))}"
            raise ConfigError(msg) from None

    def source(self, name: str) -> Source:
        """The live source connector ``name`` (built on first use)."""
        if name not in self._sources:
            cfg = self.source_config(name)
            ctx = self._context(self.source_mapping(name))
            self._sources[name] = registry.get("source", cfg.type).factory(name, cfg.options, ctx)
        return self._sources[name]

    def channel(self, name: str) -> Channel:
        """The live channel connector ``name`` (built on first use)."""
        if name not in self._channels:
            try:
                cfg = self.config.channels[name]
            except KeyError:
                msg = f"unknown channel {name!r}; known: {', '.join(sorted(self.config.channels))}"
                raise ConfigError(msg) from None
            ctx = self._context(self._mapping("channel", cfg.type, cfg.mapping))
            self._channels[name] = registry.get("channel", cfg.type).factory(name, cfg.options, ctx)
        return self._channels[name]

    def source_names(self) -> list[str]:
        return [n for n, s in self.config.sources.items() if s.enabled]

    def channel_names(self) -> list[str]:
        return [n for n, c in self.config.channels.items() if c.enabled]

    def close(self) -> None:
        conns: list[Source | Channel] = [*self._sources.values(), *self._channels.values()]
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing must not hide the real outcome
                log.exception("closing connector %s failed", conn.name)
        self._sources.clear()
        self._channels.clear()
        self.db.dispose()


def open_runtime(
    config: AppConfig,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> Runtime:
    """Open the store (migrating it) and build the runtime for ``config``."""
    return Runtime(config=config, db=open_database(config.database_url), clock=clock, sleep=sleep)
