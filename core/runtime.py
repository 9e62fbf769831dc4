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
from core.conf import AppConfig, SourceConfig, build_calendar
from core.conf.masking import leaf_secret_values, remember_secrets
from core.connector import Channel, ConnectorContext, Source
from core.errors import ConfigError, RetriableError
from core.mapping import merge_mapping
from core.retry import call_with_retry, make_retrying
from core.store import Database, open_database
from core.store.db import open_existing
from core.timeutil import utcnow

log = logging.getLogger("qloop")
T = TypeVar("T")


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
        # one Policy object, built by the config; the runtime reuses it and its calendar
        self.policies.update(self.config.policies)
        for pol in self.policies.values():
            self.calendars.setdefault(pol.calendar.name, pol.calendar)
        # masked in every error and log line of this process, in any encoding
        remember_secrets(leaf_secret_values(self.config.data, self.config.secret_paths))
        for name, cal in self.config.calendars.items():
            if name not in self.calendars:
                self.calendars[name] = build_calendar(cal)

    def now(self) -> datetime:
        return self.clock()

    def report(self, step: str, done: int) -> None:
        """Tell the progress display how far a long step is."""
        if self.on_progress is not None:
            self.on_progress(step, done)

    def call(self, fn: Callable[[], T]) -> T:
        """Call a connector under the retry policy (Retry-After honoured), waiting by ``sleep``.

        The first attempt is a plain call: the retry machinery is built only
        when it raises a :class:`RetriableError`, and then takes that error as
        its own first attempt (same waits, same number of tries as if it had
        made it). Any other error is raised as the retry policy raises it.
        """
        try:
            return fn()
        except RetriableError as exc:
            first: list[RetriableError] = [exc]

        def again() -> T:
            if first:
                raise first.pop()
            return fn()

        return call_with_retry(again, make_retrying(sleep=self.sleep))

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

    def channel_mapping(self, name: str) -> dict[str, Any]:
        """The effective mapping of channel ``name`` (defaults merged with overrides)."""
        cfg = self.config.channels[name]
        return self._mapping("channel", cfg.type, cfg.mapping)

    def _context(self, mapping: dict[str, Any]) -> ConnectorContext:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        return ConnectorContext(
            state_dir=self.config.state_dir,
            mapping=mapping,
            clock=self.clock,
            sleep=self.sleep,
            redis_url=self.config.redis_url,
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
    *,
    existing: bool = False,
) -> Runtime:
    """Open the store (migrating it) and build the runtime for ``config``.

    With ``existing`` (commands that only look), the store must already
    exist at the newest schema: nothing is created or migrated
    (:func:`core.store.db.open_existing`).
    """
    url = config.database_url
    db = open_existing(url) if existing else open_database(url)
    return Runtime(config=config, db=db, clock=clock, sleep=sleep)
