"""Schema, connector-type and cross-reference validation; the shipped configs; the model."""

from __future__ import annotations

import importlib
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest

import config
from core import registry
from core.conf import (
    ConfigError,
    format_problems,
    interpolate,
    load_config,
    read_yaml,
    top_schema,
    validate,
)
from core.timeutil import Duration

DUMMY_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string"},
        "port": {"type": "integer"},
        "auth": {"type": "object", "properties": {"api_token": {"type": "string"}}},
    },
}


@pytest.fixture
def types(monkeypatch):
    """Dummy connector types, removed after the test."""
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    registry.register("source", "dummy", lambda *a: None, DUMMY_OPTIONS)
    registry.register("source", "other", lambda *a: None, {"type": "object"})
    registry.register("channel", "dummy", lambda *a: None, {"type": "object"})
    return registry


BASE = """\
database_url: sqlite:///test.db
timezone: Asia/Shanghai
calendars:
  office:
    timezone: Asia/Shanghai
    hours: {mon-fri: "09:00-12:00,13:00-18:00"}
    holidays: {country: CN}
sources:
  itsm:
    type: dummy
    url: https://itsm.example
    schedule: "*/5 * * * *"
channels:
  phone:
    type: dummy
  mail:
    type: dummy
policies:
  default:
    calendar: office
    callback: {channel: phone}
    survey: {channel: mail, sample: {rate: 0.3}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qloop.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return info.value.problems


def one_problem(tmp_path: Path, text: str, path: str):
    found = [p for p in problems_of(tmp_path, text) if p.path == path]
    assert len(found) == 1, found
    return found[0]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_top_schema_is_valid_2020_12():
    jsonschema.Draft202012Validator.check_schema(top_schema())


def test_base_config_and_defaults(tmp_path, types):
    cfg = load_config(write(tmp_path, BASE), env={})
    assert cfg.path == tmp_path / "qloop.yaml"
    assert cfg.base_dir == tmp_path
    assert cfg.state_dir == tmp_path / ".qloop"
    assert cfg.database_url == "sqlite:///test.db"
    assert cfg.redis_url is None
    cal = cfg.calendars["office"]
    assert cal.hours[0] == ((9 * 3600, 12 * 3600), (13 * 3600, 18 * 3600))
    assert cal.hours[5] == () and cal.hours[6] == ()
    assert (cal.country, cal.subdiv, cal.holidays, cal.adjusted_day_hours) == ("CN", None, (), None)
    src = cfg.sources["itsm"]
    assert (src.type, src.policy, src.enabled, src.mapping) == ("dummy", "default", True, {})
    assert src.options == {"url": "https://itsm.example"}
    assert cfg.channels["phone"].schedule == "*/10 * * * *"
    pol = cfg.policies["default"]
    assert pol.response_targets["P4"] == Duration(business_days=1)
    assert pol.resolution_targets["P1"] == Duration(seconds=4 * 3600)
    assert (pol.callback_channel, pol.callback_within_s, pol.callback_min_attempts) == (
        "phone",
        86_400,
        3,
    )
    assert pol.survey_channels == ("mail",)  # `channel: x` is a one-element list
    assert pol.sample.rate == 0.3
    assert pol.sample.stratify_by == ("customer", "service")
    assert (pol.low_score_below, pol.major_score_at_most) == (4, 2)
    assert (pol.push_to, pol.rectify_working_days) == ("source", 10)
    assert pol.major_priorities == frozenset({"P1", "P2"})
    assert re.fullmatch(r"[0-9a-f]{12}", pol.version)
    assert cfg.matching_window_s == 7 * 86_400
    assert (cfg.outbox_max_attempts, cfg.outbox_backoff_initial_s, cfg.outbox_backoff_max_s) == (
        8,
        30,
        3600,
    )
    assert cfg.schedules == {
        "dispatch": "* * * * *",
        "collect": "*/5 * * * *",
        "evaluate": "*/5 * * * *",
        "track": "0 * * * *",
        "deliver": "0 2 * * *",
        "campaigns": "0 * * * *",
        "complaints": "*/10 * * * *",
    }
    assert cfg.complaints is None  # no complaints block: nothing is a complaint


def test_policy_version_follows_policy_and_calendar(tmp_path, types):
    version = load_config(write(tmp_path, BASE), env={}).policies["default"].version
    explicit_default = BASE.replace(
        "callback: {channel: phone}", "callback: {within: 24h, channel: phone}"
    )
    assert (
        load_config(write(tmp_path, explicit_default), env={}).policies["default"].version
        == version
    )
    other_calendar = BASE.replace("13:00-18:00", "13:00-17:30")
    assert (
        load_config(write(tmp_path, other_calendar), env={}).policies["default"].version != version
    )
    other_rule = BASE.replace("rate: 0.3", "rate: 0.4")
    assert load_config(write(tmp_path, other_rule), env={}).policies["default"].version != version


def test_wrong_type_nested_deep_is_reported_at_its_line(tmp_path, types):
    text = BASE.replace(
        "callback: {channel: phone}", "callback:\n      channel: phone\n      min_attempts: three"
    )
    problem = one_problem(tmp_path, text, "policies.default.callback.min_attempts")
    assert problem.line == line_of(text, "min_attempts")
    assert "integer" in problem.message and "three" in problem.message


def test_unknown_key_is_reported_at_its_own_line(tmp_path, types):
    text = BASE.replace("    calendar: office\n", "    calendar: office\n    calender: x\n")
    problem = one_problem(tmp_path, text, "policies.default.calender")
    assert problem.line == line_of(text, "calender:")
    assert "unknown key" in problem.message and "calendar" in problem.message


def test_many_problems_at_once_sorted_by_line(tmp_path, types):
    text = (
        BASE.replace("timezone: Asia/Shanghai\ncal", "timezone: Mars/Olympus\ncal")
        .replace('schedule: "*/5 * * * *"', "schedule: every 5 min")
        .replace("calendar: office", "calendar: nowhere")
        .replace("rate: 0.3", "rate: 1.5")
    )
    problems = problems_of(tmp_path, text)
    by_path = {p.path: p for p in problems}
    assert set(by_path) >= {
        "timezone",
        "sources.itsm.schedule",
        "policies.default.calendar",
        "policies.default.survey.sample.rate",
    }
    assert by_path["timezone"].line == 2
    assert by_path["sources.itsm.schedule"].line == line_of(text, "every 5 min")
    assert by_path["sources.itsm.schedule"].message.startswith(
        "'every 5 min' is not a valid cron expression"
    )
    lines = [p.line for p in problems]
    assert lines == sorted(lines)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert str(info.value).startswith(f"{tmp_path / 'qloop.yaml'}: {len(problems)} problems")
    out = format_problems(info.value)
    assert f"{tmp_path / 'qloop.yaml'}:2: timezone: 'Mars/Olympus' is not a time zone" in out
    assert len(out.splitlines()) == len(problems)


def test_unknown_connector_type_lists_valid_ones(tmp_path, types):
    text = BASE.replace("type: dummy\n    url", "type: jira_nope\n    url")
    problem = one_problem(tmp_path, text, "sources.itsm.type")
    assert problem.line == line_of(text, "jira_nope")
    assert "jira_nope" in problem.message
    assert "dummy" in problem.message and "other" in problem.message


def test_type_options_are_checked_with_prefixed_paths(tmp_path, types):
    text = BASE.replace(
        "    url: https://itsm.example\n", "    port: not-a-port\n    colour: blue\n"
    )
    problems = {p.path: p for p in problems_of(tmp_path, text)}
    assert problems["sources.itsm.port"].line == line_of(text, "not-a-port")
    assert problems["sources.itsm.colour"].message.startswith("unknown key 'colour'")
    assert "url" in problems["sources.itsm"].message  # required option missing


def test_connector_types_can_be_skipped(tmp_path):
    text = BASE.replace("type: dummy\n    url", "type: jira_nope\n    url")
    data, index, _ = read_yaml(write(tmp_path, text))
    assert validate(interpolate(data, index, {}).data, index, connector_types=False) == []


@pytest.mark.parametrize(
    ("old", "new", "path", "words", "at"),
    [
        (
            'schedule: "*/5 * * * *"',
            'schedule: "61 * * * *"',
            "sources.itsm.schedule",
            "cron",
            "61 *",
        ),
        (
            "    timezone: Asia/Shanghai\n    hours",
            "    timezone: Asia/Nowhere\n    hours",
            "calendars.office.timezone",
            "time zone",
            "Nowhere",
        ),
        ("country: CN", "country: XX", "calendars.office.holidays.country", "XX", "XX"),
        ("country: CN", "country: cn", "calendars.office.holidays.country", "'CN'", "cn"),
        ("country: CN", "country: CN, subdiv: ZZ", "calendars.office.holidays.subdiv", "ZZ", "ZZ"),
        (
            "calendar: office",
            "calendar: nowhere",
            "policies.default.calendar",
            "nowhere",
            "nowhere",
        ),
        (
            "callback: {channel: phone}",
            "callback: {channel: fax}",
            "policies.default.callback.channel",
            "fax",
            "fax",
        ),
        (
            "survey: {channel: mail,",
            "survey: {channels: [mail, pigeon],",
            "policies.default.survey.channels[1]",
            "pigeon",
            "pigeon",
        ),
        (
            "    url: https://itsm.example\n",
            "    url: x\n    policy: strict\n",
            "sources.itsm.policy",
            "strict",
            "strict",
        ),
        (
            "callback: {channel: phone}",
            "callback: {channel: phone, within: 1bd}",
            "policies.default.callback.within",
            "business days",
            "1bd",
        ),
        (
            "calendar: office",
            "calendar: office\n    nonconformity: {push_to: elsewhere}",
            "policies.default.nonconformity.push_to",
            "elsewhere",
            "elsewhere",
        ),
        (
            "calendar: office",
            "calendar: office\n    nonconformity: {rectify_within: 36h}",
            "policies.default.nonconformity.rectify_within",
            "whole business days",
            "36h",
        ),
        (
            "calendar: office",
            "calendar: office\n    response: {P1: 15m, P2: 30x, P3: 4h, P4: 1d}",
            "policies.default.response.P2",
            "not a duration",
            "30x",
        ),
        (
            "calendar: office",
            "calendar: office\n    response: {P1: 15m, P2: 30m, P3: 4h}",
            "policies.default.response",
            "P4",
            "response:",
        ),
        ("rate: 0.3", "rate: 1.5", "policies.default.survey.sample.rate", "maximum", "1.5"),
        (
            "rate: 0.3",
            "rate: 0.3, stratify_by: [colour]",
            "policies.default.survey.sample.stratify_by[0]",
            "colour",
            "colour",
        ),
        ("13:00-18:00", "11:00-18:00", "calendars.office.hours.mon-fri", "overlap", "11:00"),
        (
            '{mon-fri: "09:00-12:00',
            '{fri: "10:00-11:00", mon-fri: "09:00-12:00',
            "calendars.office.hours.mon-fri",
            "fri",
            "hours:",
        ),
        ("{mon-fri:", "{mon-fry:", "calendars.office.hours.mon-fry", "day", "mon-fry"),
        ("13:00-18:00", "13:00-25:00", "calendars.office.hours.mon-fri", "25:00", "25:00"),
        (
            "holidays: {country: CN}",
            "holidays: {country: CN, dates: [2026-02-30]}",
            "calendars.office.holidays.dates[0]",
            "date",
            "2026-02-30",
        ),
        (
            "timezone: Asia/Shanghai\ncal",
            "timezone: Asia/Shanghai\nmatching: {window: 2bd}\ncal",
            "matching.window",
            "business days",
            "2bd",
        ),
        (
            "timezone: Asia/Shanghai\ncal",
            "timezone: Asia/Shanghai\noutbox: {backoff_initial: 2h, backoff_max: 1h}\ncal",
            "outbox.backoff_max",
            "backoff_initial",
            "outbox:",
        ),
        (
            "database_url: sqlite:///test.db",
            "database_url: mysql://h/db",
            "database_url",
            "scheme",
            "mysql",
        ),
        (
            "survey: {channel: mail,",
            "survey: {channel: mail, channels: [mail],",
            "policies.default.survey.channel",
            "not both",
            "survey:",
        ),
        (
            "calendar: office",
            "calendar: office\n    satisfaction: {low_below: 2, major_at_most: 3}",
            "policies.default.satisfaction",
            "below",
            "satisfaction:",
        ),
        (
            "  phone:\n",
            "  bad name:\n    type: dummy\n  phone:\n",
            "channels.bad name",
            "name",
            "bad name:",
        ),
        (
            'hours: {mon-fri: "09:00-12:00,13:00-18:00"}',
            'hours: {mon-fri: ""}',
            "calendars.office.hours",
            "no working hours",
            "hours:",
        ),
        (
            "survey: {channel: mail, sample: {rate: 0.3}}",
            "survey: {sample: {rate: 0.3}}",
            "policies.default.survey",
            "needs channel",
            "survey:",
        ),
    ],
)
def test_each_check(tmp_path, types, old, new, path, words, at):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    problem = one_problem(tmp_path, text, path)
    assert words in problem.message
    assert problem.line == line_of(text, at)


def test_retyped_env_int_satisfies_an_integer_option(tmp_path, types):
    text = BASE.replace(
        "    url: https://itsm.example\n",
        "    url: https://itsm.example\n    port: ${ITSM_PORT:-8443}\n",
    )
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.sources["itsm"].options["port"] == 8443
    cfg = load_config(write(tmp_path, text), env={"ITSM_PORT": "9000"})
    assert cfg.sources["itsm"].options["port"] == 9000


def load_shipped_types():
    """The real sandbox connector when it exists, else dummies with permissive options."""
    try:
        importlib.import_module("connectors.sandbox")
    except ModuleNotFoundError as exc:  # not written yet; any other import error is a bug
        if exc.name not in ("connectors", "connectors.sandbox"):
            raise
    for kind in ("source", "channel"):
        if "sandbox" not in registry.names(kind):
            registry.register(kind, "sandbox", lambda *a: None, {"type": "object"})


def test_shipped_sandbox_config_loads(monkeypatch):
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    load_shipped_types()
    cfg = load_config(config.path("sandbox.yaml"), env={})
    assert cfg.database_url == "sqlite:///qloop.db"
    assert cfg.redis_url is None
    assert cfg.timezone == "Asia/Shanghai"
    assert set(cfg.sources) == {"sandbox-itsm"}
    assert cfg.sources["sandbox-itsm"].options == {
        "seed": "qloop-demo",
        "month": "2026-10",
        "incidents": 400,
        "failure_rate": 0.05,
        "retry_after": 0.2,
    }
    assert set(cfg.channels) == {"phone", "survey-mail", "survey-phone"}
    assert cfg.channels["survey-mail"].options["ascii_email_only"] is True
    pol = cfg.policies["default"]
    assert pol.survey_channels == ("survey-mail", "survey-phone")
    assert pol.sample.rate == 0.3 and pol.sample.stratify_by == ("customer", "service")
    assert pol.push_to == "source" and pol.callback_channel == "phone"
    assert cfg.calendars["cn-office"].country == "CN"
    env = {"QLOOP_DATABASE_URL": "sqlite:////tmp/x.db", "QLOOP_STATE_DIR": "/tmp/s"}
    cfg = load_config(config.path("sandbox.yaml"), env=env)
    assert cfg.database_url == "sqlite:////tmp/x.db"
    assert cfg.state_dir == Path("/tmp/s")


PRODUCTION_ENV = {
    "QLOOP_DATABASE_URL": "postgresql+psycopg://qloop:pw-db-123@db/qloop",
    "QLOOP_REDIS_URL": "redis://redis:6379/0",
    "JIRA_TOKEN": "jira-token-value",
    "GLPI_APP_TOKEN": "glpi-app-value",
    "GLPI_USER_TOKEN": "glpi-user-value",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "twilio-token-value",
    "LIMESURVEY_PASSWORD": "lime-pw-value",
    "IVR_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def test_production_example_passes_every_connector_schema(monkeypatch):
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    for name in ("glpi", "jira_sm", "limesurvey", "twilio", "webhook"):
        # (re)register the real types: an earlier test may have imported them into a
        # registry it then threw away
        module = importlib.import_module(f"connectors.{name}")
        importlib.reload(module)
    cfg = load_config(config.path("example-production.yaml"), env=PRODUCTION_ENV)
    assert {s.type for s in cfg.sources.values()} == {"jira_sm", "glpi"}
    assert {c.type for c in cfg.channels.values()} == {"twilio_taskrouter", "limesurvey", "webhook"}


@pytest.mark.parametrize("name", ["example-embedded.yaml", "example-production.yaml"])
def test_examples_pass_the_top_level_schema(name):
    data, index, problems = read_yaml(config.path(name))
    assert problems == []
    result = interpolate(data, index, PRODUCTION_ENV)
    assert result.problems == []
    assert validate(result.data, index, connector_types=False) == []
    cfg = load_config(config.path(name), env=PRODUCTION_ENV, connector_types=False)
    assert cfg.policies


def test_production_example_needs_its_env():
    with pytest.raises(ConfigError) as info:
        load_config(config.path("example-production.yaml"), env={}, connector_types=False)
    assert {p.path for p in info.value.problems} >= {
        "database_url",
        "sources.jira-prod.auth.api_token",
    }
