"""The validated configuration as frozen dataclasses, and how it is built.

:func:`build` turns data that passed :mod:`core.conf.validate` into an
:class:`AppConfig`, filling every default. The parsers for working hours
(``parse_hours``, ``parse_spans``) live here because validation and building
share them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.calendar import BusinessCalendar
from core.compliance.policy import Policy, SampleRule
from core.conf.masking import mask, secret_values
from core.errors import ConfigError, InputError
from core.timeutil import Duration, parse_duration, to_utc

Spans = tuple[tuple[int, int], ...]
"""Working spans of a day: (start, end) in seconds since local midnight, sorted."""

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOURS = {"mon-fri": "09:00-18:00"}
DEFAULT_SCHEDULES = {
    "dispatch": "* * * * *",
    "collect": "*/5 * * * *",
    "evaluate": "*/5 * * * *",
    "track": "0 * * * *",
    "deliver": "0 2 * * *",
    "campaigns": "0 * * * *",
    "complaints": "*/10 * * * *",
}
DEFAULT_SOURCE_SCHEDULE = "*/5 * * * *"
DEFAULT_CHANNEL_SCHEDULE = "*/10 * * * *"
DEFAULT_DATABASE_URL = "sqlite:///qloop.db"
DEFAULT_AUDIT_RETENTION_DAYS = 365
SOURCE_COMMON = frozenset({"type", "policy", "schedule", "mapping", "enabled", "tracking_from"})
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
    tracking_from: datetime | None = None
    """§11 tracking start set in the config (UTC); None: the first successful sync's instant."""


@dataclass(frozen=True)
class ChannelConfig:
    """A phone/survey channel; ``options`` are its type-specific keys."""

    name: str
    type: str
    schedule: str
    enabled: bool
    mapping: dict[str, Any]
    options: dict[str, Any]


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
    """The HTTP API's settings: its bearer tokens and the QA web page's session secret."""

    tokens: tuple[ApiTokenConfig, ...] = ()
    session_secret: str | None = field(default=None, repr=False)
    """Signs the QA web page's session cookies; None: a random one per process."""


@dataclass(frozen=True)
class ReportRecipient:
    """One entry of ``reports.send``: where the monthly report goes, how, in which form."""

    to: tuple[str, ...]
    via: str = "email"
    """``email`` (SMTP) or ``webhook`` (a signed POST)."""
    format: str = "pdf"
    lang: str | None = None
    """The report's language; None: the report's default (zh-CN for a CN calendar, else en)."""
    secret: str | None = None
    """``webhook``: the Standard Webhooks signing secret (``whsec_…``)."""


@dataclass(frozen=True)
class SmtpConfig:
    """The SMTP server that sends the monthly report by e-mail."""

    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    sender: str = "qloop@localhost"
    cafile: str | None = None
    """A CA bundle to verify the server's certificate with (default: the system's)."""
    timeout_s: float = 30.0


@dataclass(frozen=True)
class ReportsConfig:
    """``reports``: the monthly report's delivery (issue 11 item 2)."""

    send: tuple[ReportRecipient, ...] = ()
    smtp: SmtpConfig | None = None


def _reports(raw: Mapping[str, Any]) -> ReportsConfig:
    smtp = raw.get("smtp")
    return ReportsConfig(
        send=tuple(
            ReportRecipient(
                to=tuple(r["to"]),
                via=r.get("via", "email"),
                format=r.get("format", "pdf"),
                lang=r.get("lang"),
                secret=r.get("secret"),
            )
            for r in raw.get("send") or ()
        ),
        smtp=SmtpConfig(
            host=smtp["host"],
            port=int(smtp.get("port", 587)),
            starttls=bool(smtp.get("starttls", True)),
            username=smtp.get("username"),
            password=smtp.get("password"),
            sender=smtp.get("from", "qloop@localhost"),
            cafile=smtp.get("cafile"),
            timeout_s=float(smtp.get("timeout_s", 30)),
        )
        if smtp
        else None,
    )


@dataclass(frozen=True)
class ComplaintRecipient:
    """One entry of ``complaints.notify`` or ``complaints.escalate``."""

    to: tuple[str, ...]
    via: str = "email"
    """``email`` (through ``reports.smtp``) or ``webhook`` (a signed POST)."""
    secret: str | None = None


@dataclass(frozen=True)
class ComplaintsConfig:
    """The ``complaints`` block: what makes a complaint, who is told, the deadline (R5)."""

    deadline: Duration
    severities: tuple[str, ...] = ("major",)
    follow_up_channel: str | None = None
    notify: tuple[ComplaintRecipient, ...] = ()
    escalate: tuple[ComplaintRecipient, ...] = ()


def _complaints(raw: Mapping[str, Any] | None) -> ComplaintsConfig | None:
    if raw is None:
        return None

    def recipients(key: str) -> tuple[ComplaintRecipient, ...]:
        return tuple(
            ComplaintRecipient(to=tuple(r["to"]), via=r.get("via", "email"), secret=r.get("secret"))
            for r in raw.get(key) or ()
        )

    return ComplaintsConfig(
        deadline=duration(raw.get("deadline", "3bd")),
        severities=tuple(raw.get("severities") or ("major",)),
        follow_up_channel=raw.get("follow_up_channel"),
        notify=recipients("notify"),
        escalate=recipients("escalate"),
    )


CAMPAIGN_STRATA = ("customer", "service", "priority", "source")
"""What a campaign can stratify its frame by (the person's latest incident in the window)."""


@dataclass(frozen=True)
class ReminderConfig:
    """A campaign's reminders to invitees who have not answered (LimeSurvey remind_participants)."""

    every_days: int = 7
    """Days after the invitation (or the last reminder) before the next reminder."""
    max_count: int = 2
    """At most this many reminders per invitee."""


@dataclass(frozen=True)
class CampaignItem:
    """One named item of a campaign's questionnaire: where its answer is and what it means.

    A score item reads the answer as a number on ``scale`` (an answer code
    listed in ``values`` maps to its number); a yes/no item (``yes_codes``
    given) is a proportion of yes among yes and no.
    """

    name: str
    question: str
    scale: tuple[float, float] = (1.0, 5.0)
    values: Mapping[str, float] = field(default_factory=dict)
    yes_codes: frozenset[str] = frozenset()
    no_codes: frozenset[str] = frozenset({"N"})

    @property
    def is_yes_no(self) -> bool:
        return bool(self.yes_codes)

    def value(self, answer: str | None) -> float | None:
        """The answer as a number (1.0/0.0 for yes/no), None when unanswered or unreadable."""
        text = (answer or "").strip()
        if not text:
            return None
        if self.is_yes_no:
            return 1.0 if text in self.yes_codes else 0.0 if text in self.no_codes else None
        if text in self.values:
            return self.values[text]
        try:
            number = float(text)
        except ValueError:
            return None
        return number if self.scale[0] <= number <= self.scale[1] else None


@dataclass(frozen=True)
class CampaignConfig:
    """One company-level satisfaction survey campaign (R3, issue 12 item 1)."""

    name: str
    window_from: date
    """First day of the incident window (in the config's ``timezone``), inclusive."""
    window_to: date
    """Last day of the incident window, inclusive."""
    channel: str
    survey_id: int | None
    """The questionnaire; None: the channel's own survey."""
    strata: tuple[str, ...] = ("customer", "service", "priority")
    rate: float = 0.1
    min_per_stratum: int = 1
    coverage_target: float = 0.3
    """Share of a stratum's invitees who must answer; status flags strata below it."""
    starts: date | None = None
    ends: date | None = None
    reminders: ReminderConfig = field(default_factory=ReminderConfig)
    cool_off_days: int = 180
    """Nobody invited by another campaign within this many days is framed again."""
    seed: str = "qloop"
    items: tuple[CampaignItem, ...] = ()
    """The questionnaire's named items, in report order."""
    comments: tuple[str, ...] = ()
    """Question codes of free-text answers (shown masked to qa-read)."""
    previous: str | None = None
    """The campaign the results report compares with."""


def _campaign_item(campaign: str, name: str, raw: Mapping[str, Any]) -> CampaignItem:
    scale = raw.get("scale") or [1, 5]
    if not float(scale[0]) < float(scale[1]):
        msg = f"campaigns.{campaign}.items.{name}.scale: min must be below max, got {scale}"
        raise ConfigError(msg)
    return CampaignItem(
        name=name,
        question=str(raw["question"]),
        scale=(float(scale[0]), float(scale[1])),
        values={str(k): float(v) for k, v in (raw.get("values") or {}).items()},
        yes_codes=frozenset(str(c) for c in raw.get("yes_codes") or ()),
        no_codes=frozenset(str(c) for c in raw.get("no_codes") or ("N",)),
    )


def _campaign(name: str, raw: Mapping[str, Any]) -> CampaignConfig:
    window = raw["window"]
    rem = raw.get("reminders") or {}
    given = _given(
        raw,
        {
            "strata": ("strata", tuple),
            "rate": ("rate", float),
            "min_per_stratum": ("min_per_stratum", int),
            "coverage_target": ("coverage_target", float),
            "starts": ("starts", lambda v: date.fromisoformat(str(v))),
            "ends": ("ends", lambda v: date.fromisoformat(str(v))),
            "cool_off_days": ("cool_off_days", int),
            "seed": ("seed", str),
            "comments": ("comments", lambda v: tuple(str(c) for c in v)),
            "previous": ("previous", str),
        },
    )
    items = tuple(_campaign_item(name, k, v) for k, v in (raw.get("items") or {}).items())
    return CampaignConfig(
        items=items,
        name=name,
        window_from=date.fromisoformat(str(window["from"])),
        window_to=date.fromisoformat(str(window["to"])),
        channel=raw["channel"],
        survey_id=int(raw["survey_id"]) if raw.get("survey_id") is not None else None,
        reminders=ReminderConfig(
            **_given(rem, {"every_days": ("every_days", int), "max": ("max_count", int)})
        ),
        **given,
    )


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
    policies: dict[str, Policy]
    matching_window_s: int
    outbox_max_attempts: int
    outbox_backoff_initial_s: int
    outbox_backoff_max_s: int
    schedules: dict[str, str]
    data: dict[str, Any]
    secret_paths: frozenset[tuple[str | int, ...]]
    api: ApiConfig = field(default_factory=ApiConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    """Audit entries older than this many days are deleted by the housekeeping step."""
    campaigns: dict[str, CampaignConfig] = field(default_factory=dict)
    complaints: ComplaintsConfig | None = None
    """None: no ``complaints`` block, nothing is treated as a complaint."""
    evaluate_processes: int = 1
    """Processes the evaluate step may fork (``core.loop.evaluate_parallel``)."""
    export_processes: int = 1
    """Processes ``qloop export`` may use for CSV or JSON lines (``core.export.split``)."""

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


def build_calendar(cfg: CalendarConfig) -> BusinessCalendar:
    """The business calendar of a calendar block."""
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


def _given(raw: Mapping[str, Any], pairs: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: convert(raw[key])}`` for the keys present: absent keys keep the SPEC default."""
    return {fld: convert(raw[key]) for key, (fld, convert) in pairs.items() if key in raw}


def _targets(value: Mapping[str, Any]) -> dict[str, Duration]:
    return {p: duration(v) for p, v in value.items()}


def _elapsed_s(value: Any) -> int:
    return duration(value, business_days=False).seconds


def _policy(
    name: str, raw: Mapping[str, Any], cal_cfg: CalendarConfig, calendar: BusinessCalendar
) -> Policy:
    """The :class:`Policy` of a ``policies:`` block; the SPEC defaults live in Policy alone."""
    kwargs: dict[str, Any] = _given(
        raw,
        {
            "response": ("response_targets", _targets),
            "resolution": ("resolution_targets", _targets),
        },
    )
    kwargs |= _given(
        raw.get("callback") or {},
        {
            "channel": ("callback_channel", lambda v: v),
            "within": ("callback_within_s", _elapsed_s),
            "min_attempts": ("callback_min_attempts", int),
        },
    )
    survey = raw.get("survey")
    if survey is not None:
        kwargs["survey_channels"] = tuple(survey_channel_names(survey))
        kwargs["sample"] = SampleRule(
            **_given(
                survey.get("sample") or {},
                {
                    "rate": ("rate", float),
                    "stratify_by": ("stratify_by", tuple),
                    "seed": ("seed", str),
                },
            )
        )
    kwargs |= _given(
        raw.get("satisfaction") or {},
        {"low_below": ("low_score_below", float), "major_at_most": ("major_score_at_most", float)},
    )
    kwargs |= _given(
        raw.get("nonconformity") or {},
        {
            "push_to": ("push_to", str),
            "rectify_within": ("rectify_working_days", lambda v: duration(v).business_days),
            "major_priorities": ("major_priorities", frozenset),
        },
    )
    policy = Policy(name=name, calendar=calendar, **kwargs)
    return dataclasses.replace(policy, version=policy_version(policy, cal_cfg))


_VERSIONED = {
    "response": "response_targets",
    "resolution": "resolution_targets",
    "callback_channel": "callback_channel",
    "callback_within_s": "callback_within_s",
    "callback_min_attempts": "callback_min_attempts",
    "survey_channels": "survey_channels",
    "sample": "sample",
    "low_score_below": "low_score_below",
    "major_score_at_most": "major_score_at_most",
    "push_to": "push_to",
    "rectify_working_days": "rectify_working_days",
    "major_priorities": "major_priorities",
}
"""Key in the version blob → Policy field: every field that is a rule (not name/version)."""


def policy_version(policy: Policy, calendar: CalendarConfig) -> str:
    """First 12 hex of sha256 over the canonical JSON of the effective policy and calendar.

    Every rule field of :class:`Policy` and every calendar setting goes in, so a
    change of any rule (explicit or by a changed default) changes the version.
    """
    blob = policy_rules(policy, calendar)
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def policy_rules(policy: Policy, calendar: CalendarConfig) -> dict[str, Any]:
    """The effective rules of ``policy`` and its calendar, as plain JSON (what is versioned)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Duration):
            return str(value)
        if isinstance(value, SampleRule):
            return {"rate": value.rate, "stratify_by": list(value.stratify_by), "seed": value.seed}
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, date):
            return value.isoformat()
        return value

    rules = {key: plain(getattr(policy, fld)) for key, fld in _VERSIONED.items()}
    rules["calendar"] = calendar.name
    cal = {f.name: getattr(calendar, f.name) for f in fields(calendar) if f.name != "name"}
    return {"policy": rules, "calendar": {"name": calendar.name, **plain(cal)}}


def parse_tracking_from(value: Any, tz: ZoneInfo) -> datetime:
    """A source's ``tracking_from``: an ISO instant with its zone, or a date (its start in ``tz``).

    Raises:
        InputError: Not a date, or an instant without a zone.
    """
    text = str(value).strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return to_utc(datetime.combine(day, time(0), tzinfo=tz))
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        msg = (
            f"{text!r} is not a date or an ISO instant "
            "(e.g. 2026-10-01 or 2026-10-01T00:00:00+08:00)"
        )
        raise InputError(msg) from None
    if instant.tzinfo is None:
        msg = f"{text!r} has no time zone: add one (e.g. +08:00 or Z), or give a date"
        raise InputError(msg)
    return to_utc(instant)


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
        ),
        session_secret=raw.get("session_secret") or None,
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
    business = {n: build_calendar(c) for n, c in calendars.items()}
    policies = {
        n: _policy(n, p, calendars[p["calendar"]], business[p["calendar"]])
        for n, p in (data.get("policies") or {}).items()
    }

    def tracking_from(s: Mapping[str, Any]) -> datetime | None:
        if s.get("tracking_from") is None:
            return None
        pol = policies.get(s.get("policy", "default"))
        tz = pol.calendar.tz if pol is not None else ZoneInfo("UTC")
        return parse_tracking_from(s["tracking_from"], tz)

    sources = {
        n: SourceConfig(
            name=n,
            type=s["type"],
            policy=s.get("policy", "default"),
            schedule=s.get("schedule", DEFAULT_SOURCE_SCHEDULE),
            enabled=bool(s.get("enabled", True)),
            mapping=dict(s.get("mapping") or {}),
            options={k: v for k, v in s.items() if k not in SOURCE_COMMON},
            tracking_from=tracking_from(s),
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
        reports=_reports(data.get("reports") or {}),
        audit_retention_days=int(
            (data.get("audit") or {}).get("retention_days", DEFAULT_AUDIT_RETENTION_DAYS)
        ),
        campaigns={n: _campaign(n, c) for n, c in (data.get("campaigns") or {}).items()},
        complaints=_complaints((data.get("complaints") or {}) if "complaints" in data else None),
        evaluate_processes=int(data.get("evaluate_processes", 1)),
        export_processes=int(data.get("export_processes", 1)),
    )
