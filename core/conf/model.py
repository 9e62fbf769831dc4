"""The validated configuration as frozen dataclasses, and how it is built.

:func:`build` turns data that passed :mod:`core.conf.validate` into an
:class:`AppConfig`, filling every default. The parsers for working hours
(``parse_hours``, ``parse_spans``) live here because validation and building
share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

from core.conf.masking import mask, secret_values
from core.timeutil import Duration, parse_duration

Spans = tuple[tuple[int, int], ...]
"""Working spans of a day: (start, end) in seconds since local midnight, sorted."""

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = {"mon-fri": "09:00-18:00"}
DEFAULT_TARGETS = {
    "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
    "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
}
DEFAULT_SCHEDULES = {
    "dispatch": "* * * * *",
    "collect": "*/5 * * * *",
    "evaluate": "*/5 * * * *",
    "track": "0 * * * *",
}
DEFAULT_SOURCE_SCHEDULE = "*/5 * * * *"
DEFAULT_CHANNEL_SCHEDULE = "*/10 * * * *"
DEFAULT_DATABASE_URL = "sqlite:///qloop.db"
SOURCE_COMMON = frozenset({"type", "policy", "schedule", "mapping", "enabled"})
CHANNEL_COMMON = frozenset({"type", "schedule", "mapping", "enabled"})


@dataclass(frozen=True)
class CalendarConfig:
    """A business calendar; ``hours`` has every weekday 0=Mon..6=Sun (empty: not worked)."""

    name: str
    timezone: str
    hours: dict[int, Spans]
    country: str | None
    subdiv: str | None
    holidays: tuple[date, ...]
    extra_workdays: tuple[date, ...]
    adjusted_day_hours: Spans | None


@dataclass(frozen=True)
class SourceConfig:
    """An ITSM source; ``options`` are its type-specific keys."""

    name: str
    type: str
    policy: str
    schedule: str
    enabled: bool
    mapping: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True)
class ChannelConfig:
    """A phone/survey channel; ``options`` are its type-specific keys."""

    name: str
    type: str
    schedule: str
    enabled: bool
    mapping: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True)
class SampleConfig:
    """Survey sampling: ``rate`` of each stratum, reproducible from ``seed``."""

    rate: float
    stratify_by: tuple[str, ...]
    seed: str


@dataclass(frozen=True)
class PolicyConfig:
    """The quality rules applied to a source's incidents."""

    name: str
    calendar: str
    response: dict[str, Duration]
    resolution: dict[str, Duration]
    callback_channel: str | None
    callback_within_s: int
    callback_min_attempts: int
    survey_channels: tuple[str, ...]
    sample: SampleConfig | None
    low_score_below: float
    major_score_at_most: float
    push_to: str
    rectify_working_days: int
    major_priorities: frozenset[str]
    version: str


API_ROLES = ("admin", "operator", "qa-read", "channel")
"""Roles of API tokens (see api/auth.py for what each may do)."""


@dataclass(frozen=True)
class ApiTokenConfig:
    """One bearer token of the HTTP API; ``channels`` only for the ``channel`` role."""

    name: str
    token: str = field(repr=False)
    role: str
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API's settings: its bearer tokens."""

    tokens: tuple[ApiTokenConfig, ...] = ()


@dataclass(frozen=True)
class AppConfig:
    """The whole validated configuration."""

    path: Path
    base_dir: Path
    database_url: str
    redis_url: str | None
    timezone: str
    state_dir: Path
    calendars: dict[str, CalendarConfig]
    sources: dict[str, SourceConfig]
    channels: dict[str, ChannelConfig]
    policies: dict[str, PolicyConfig]
    matching_window_s: int
    outbox_max_attempts: int
    outbox_backoff_initial_s: int
    outbox_backoff_max_s: int
    schedules: dict[str, str]
    data: dict[str, Any]
    secret_paths: frozenset[tuple[str | int, ...]]
    api: ApiConfig = field(default_factory=ApiConfig)

    def masked(self) -> dict[str, Any]:
        """The interpolated configuration with every secret replaced by ``***``."""
        result: dict[str, Any] = mask(self.data, self.secret_paths)
        return result

    def secret_values(self) -> set[str]:
        """The secret strings of this configuration, for :func:`core.conf.mask_text`."""
        return secret_values(self.data, self.secret_paths)


def parse_clock(text: str, *, end: bool = False) -> int:
    """``09:30`` → seconds since midnight; ``24:00`` only when ``end``."""
    hh, sep, mm = text.strip().partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2 or len(hh) > 2:
        msg = f"{text.strip()!r} is not a time (HH:MM)"
        raise ValueError(msg)
    hours, minutes = int(hh), int(mm)
    if (hours, minutes) == (24, 0) and end:
        return 86_400
    if hours > 23 or minutes > 59:
        msg = f"{text.strip()!r} is not a time of day (00:00-23:59, 24:00 as an end)"
        raise ValueError(msg)
    return hours * 3600 + minutes * 60


def parse_spans(value: str | list[str] | None) -> Spans:
    """``"09:00-12:00,13:00-18:00"`` (or a list of spans) → sorted (start, end) seconds.

    Raises:
        ValueError: A span is malformed, empty or overlaps another.
    """
    if value is None:
        return ()
    parts = value if isinstance(value, list) else str(value).split(",")
    spans: list[tuple[int, int]] = []
    for part in (str(p).strip() for p in parts):
        if not part:
            continue
        start, sep, stop = part.partition("-")
        if not sep:
            msg = f"{part!r} is not a span (HH:MM-HH:MM)"
            raise ValueError(msg)
        span = (parse_clock(start), parse_clock(stop, end=True))
        if span[0] >= span[1]:
            msg = f"span {part!r} ends before it starts"
            raise ValueError(msg)
        spans.append(span)
    spans.sort()
    for first, second in pairwise(spans):
        if second[0] < first[1]:
            msg = f"working spans {_span_text(first)} and {_span_text(second)} overlap"
            raise ValueError(msg)
    return tuple(spans)


def _span_text(span: tuple[int, int]) -> str:
    return "-".join(f"{s // 3600:02d}:{s % 3600 // 60:02d}" for s in span)


def parse_days(text: str) -> list[int]:
    """``mon-fri`` / ``sat,sun`` / ``fri-mon`` → weekday numbers (0=Mon)."""
    out: list[int] = []
    for part in (p.strip().lower() for p in str(text).split(",")):
        first, sep, last = part.partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            msg = f"{part!r} is not a day or day range (mon..sun, e.g. mon-fri or sat,sun)"
            raise ValueError(msg)
        start = DAYS.index(first)
        stop = DAYS.index(last) if sep else start
        out.extend((start + i) % 7 for i in range((stop - start) % 7 + 1))
    return out


def parse_hours(hours: Mapping[str, Any]) -> dict[int, Spans]:
    """``{mon-fri: "09:00-18:00"}`` → spans for every weekday 0..6.

    Raises:
        ValueError: A key or value is malformed, or a day is given twice.
    """
    out: dict[int, Spans] = {d: () for d in range(7)}
    seen: dict[int, str] = {}
    for key, value in hours.items():
        spans = parse_spans(value)
        for day in parse_days(key):
            if day in seen:
                msg = f"{DAYS[day]} is given twice ({seen[day]!r} and {key!r})"
                raise ValueError(msg)
            seen[day] = key
            out[day] = spans
    return out


def duration(value: Any, *, business_days: bool = True) -> Duration:
    """Parse a config duration (``4h``, ``3bd``, or an int of seconds)."""
    return parse_duration(value, allow_business_days=business_days)


def _calendar(name: str, raw: Mapping[str, Any]) -> CalendarConfig:
    hol = raw.get("holidays") or {}
    adjusted = raw.get("adjusted_day_hours")
    return CalendarConfig(
        name=name,
        timezone=raw["timezone"],
        hours=parse_hours(raw.get("hours", DEFAULT_HOURS)),
        country=hol.get("country"),
        subdiv=hol.get("subdiv"),
        holidays=tuple(sorted({date.fromisoformat(d) for d in hol.get("dates") or []})),
        extra_workdays=tuple(
            sorted({date.fromisoformat(d) for d in raw.get("extra_workdays") or []})
        ),
        adjusted_day_hours=parse_spans(adjusted) if adjusted is not None else None,
    )


def survey_channel_names(survey: Mapping[str, Any]) -> list[str]:
    """The survey channels of a policy's ``survey`` block (``channel`` or ``channels``)."""
    if "channels" in survey:
        return list(survey.get("channels") or [])
    channel = survey.get("channel")
    return [channel] if channel else []


def _policy(name: str, raw: Mapping[str, Any], calendar: CalendarConfig) -> PolicyConfig:
    targets = {
        k: {p: duration(v) for p, v in (raw.get(k) or DEFAULT_TARGETS[k]).items()}
        for k in ("response", "resolution")
    }
    cb = raw.get("callback") or {}
    survey = raw.get("survey")
    sample = None
    if survey is not None:
        s = survey.get("sample") or {}
        sample = SampleConfig(
            rate=float(s.get("rate", 1.0)),
            stratify_by=tuple(s.get("stratify_by", ("customer", "service"))),
            seed=str(s.get("seed", "qloop")),
        )
    sat = raw.get("satisfaction") or {}
    nc = raw.get("nonconformity") or {}
    fields: dict[str, Any] = {
        "calendar": raw["calendar"],
        "response": targets["response"],
        "resolution": targets["resolution"],
        "callback_channel": cb.get("channel"),
        "callback_within_s": duration(cb.get("within", "24h"), business_days=False).seconds,
        "callback_min_attempts": int(cb.get("min_attempts", 3)),
        "survey_channels": tuple(survey_channel_names(survey or {})),
        "sample": sample,
        "low_score_below": float(sat.get("low_below", 4)),
        "major_score_at_most": float(sat.get("major_at_most", 2)),
        "push_to": nc.get("push_to", "source"),
        "rectify_working_days": duration(nc.get("rectify_within", "10bd")).business_days,
        "major_priorities": frozenset(nc.get("major_priorities", ("P1", "P2"))),
    }
    return PolicyConfig(name=name, version=_version(fields, calendar), **fields)


def _version(fields: Mapping[str, Any], calendar: CalendarConfig) -> str:
    """First 12 hex of sha256 over the canonical JSON of the effective policy and calendar."""

    def plain(value: Any) -> Any:
        if isinstance(value, Duration):
            return str(value)
        if isinstance(value, SampleConfig):
            return {"rate": value.rate, "stratify_by": list(value.stratify_by), "seed": value.seed}
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, date):
            return value.isoformat()
        return value

    cal = {k: getattr(calendar, k) for k in calendar.__dataclass_fields__ if k != "name"}
    blob = {"policy": plain(dict(fields)), "calendar": {"name": calendar.name, **plain(cal)}}
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _api(raw: Mapping[str, Any]) -> ApiConfig:
    return ApiConfig(
        tokens=tuple(
            ApiTokenConfig(
                name=t["name"],
                token=t["token"],
                role=t["role"],
                channels=tuple(t.get("channels") or ()),
            )
            for t in raw.get("tokens") or ()
        )
    )


def build(
    data: Mapping[str, Any], path: Path, secret_paths: frozenset[tuple[str | int, ...]]
) -> AppConfig:
    """Build the :class:`AppConfig` of validated, interpolated ``data`` read from ``path``.

    Args:
        data: The interpolated data; it must have passed validation.
        path: The config file (relative paths in it are relative to its folder).
        secret_paths: Paths of secret values (see :mod:`core.conf.masking`).

    Returns:
        The configuration with every default filled in.
    """
    file = Path(os.path.abspath(path))
    base = file.parent
    calendars = {n: _calendar(n, c) for n, c in (data.get("calendars") or {}).items()}
    sources = {
        n: SourceConfig(
            name=n,
            type=s["type"],
            policy=s.get("policy", "default"),
            schedule=s.get("schedule", DEFAULT_SOURCE_SCHEDULE),
            enabled=bool(s.get("enabled", True)),
            mapping=dict(s.get("mapping") or {}),
            options={k: v for k, v in s.items() if k not in SOURCE_COMMON},
        )
        for n, s in (data.get("sources") or {}).items()
    }
    channels = {
        n: ChannelConfig(
            name=n,
            type=c["type"],
            schedule=c.get("schedule", DEFAULT_CHANNEL_SCHEDULE),
            enabled=bool(c.get("enabled", True)),
            mapping=dict(c.get("mapping") or {}),
            options={k: v for k, v in c.items() if k not in CHANNEL_COMMON},
        )
        for n, c in (data.get("channels") or {}).items()
    }
    policies = {
        n: _policy(n, p, calendars[p["calendar"]]) for n, p in (data.get("policies") or {}).items()
    }
    matching = data.get("matching") or {}
    outbox = data.get("outbox") or {}
    state_dir = Path(os.path.expanduser(str(data.get("state_dir") or ".qloop")))
    return AppConfig(
        path=file,
        base_dir=base,
        database_url=data.get("database_url") or DEFAULT_DATABASE_URL,
        redis_url=data.get("redis_url") or None,
        timezone=data.get("timezone") or "UTC",
        state_dir=Path(os.path.abspath(base / state_dir)),
        calendars=calendars,
        sources=sources,
        channels=channels,
        policies=policies,
        matching_window_s=duration(matching.get("window", "7d"), business_days=False).seconds,
        outbox_max_attempts=int(outbox.get("max_attempts", 8)),
        outbox_backoff_initial_s=duration(
            outbox.get("backoff_initial", "30s"), business_days=False
        ).seconds,
        outbox_backoff_max_s=duration(outbox.get("backoff_max", "1h"), business_days=False).seconds,
        schedules={**DEFAULT_SCHEDULES, **(data.get("schedules") or {})},
        data=dict(data),
        secret_paths=secret_paths,
        api=_api(data.get("api") or {}),
    )
