"""The config builds the one Policy object; tracking_from of a source (SPEC §11)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import registry
from core.compliance import Policy, SampleRule, policy_default
from core.conf import ConfigError, load_config

BASE = """\
calendars:
  office:
    timezone: Asia/Shanghai
    hours: {mon-fri: "09:00-12:00,13:00-18:00"}
sources:
  itsm:
    type: dummy
channels:
  phone:
    type: dummy
policies:
  default:
    calendar: office
    callback: {channel: phone}
    survey: {channel: phone, sample: {rate: 0.3}}
"""


@pytest.fixture
def types(monkeypatch):
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    registry.register("source", "dummy", lambda *a: None, {"type": "object"})
    registry.register("channel", "dummy", lambda *a: None, {"type": "object"})
    return registry


def load(tmp_path: Path, text: str):
    path = tmp_path / "qloop.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, env={})


def test_the_config_builds_the_engines_policy_with_spec_defaults(tmp_path, types):
    cfg = load(tmp_path, BASE)
    pol = cfg.policies["default"]
    assert type(pol) is Policy  # one policy type: no copy field by field
    assert pol.calendar.name == "office" and str(pol.calendar.tz) == "Asia/Shanghai"
    assert pol.sample == SampleRule(rate=0.3)
    # every default comes from the Policy's own fields
    for name in (
        "callback_within_s",
        "callback_min_attempts",
        "low_score_below",
        "major_score_at_most",
        "major_priorities",
        "rectify_working_days",
        "push_to",
        "response_targets",
        "resolution_targets",
    ):
        assert getattr(pol, name) == policy_default(name), name
    assert policy_default("callback_within_s") == 86_400
    assert policy_default("callback_min_attempts") == 3
    assert policy_default("rectify_working_days") == 10
    assert policy_default("low_score_below") == 4


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("callback: {channel: phone}", "callback: {channel: phone, within: 12h}"),
        ("callback: {channel: phone}", "callback: {channel: phone, min_attempts: 2}"),
        ("calendar: office\n", "calendar: office\n    satisfaction: {low_below: 3}\n"),
        ("calendar: office\n", "calendar: office\n    satisfaction: {major_at_most: 1}\n"),
        ("calendar: office\n", "calendar: office\n    nonconformity: {rectify_within: 5bd}\n"),
        ("calendar: office\n", "calendar: office\n    nonconformity: {major_priorities: [P1]}\n"),
        (
            "calendar: office\n",
            "calendar: office\n    response: {P1: 1h, P2: 30m, P3: 4h, P4: 1bd}\n",
        ),
        ("rate: 0.3", "rate: 0.3, seed: other"),
    ],
)
def test_a_rule_change_changes_the_version(tmp_path, types, old, new):
    version = load(tmp_path, BASE).policies["default"].version
    changed = load(tmp_path, BASE.replace(old, new, 1)).policies["default"]
    assert changed.version != version


def test_explicit_defaults_keep_the_version(tmp_path, types):
    version = load(tmp_path, BASE).policies["default"].version
    explicit = BASE.replace(
        "callback: {channel: phone}",
        "callback: {channel: phone, within: 24h, min_attempts: 3}\n"
        "    satisfaction: {low_below: 4, major_at_most: 2}\n"
        "    nonconformity: {rectify_within: 10bd, major_priorities: [P2, P1], push_to: source}",
    )
    assert load(tmp_path, explicit).policies["default"].version == version


def test_low_below_sets_low_score_and_csat_alike(tmp_path, types):
    pol = load(
        tmp_path,
        BASE.replace("calendar: office\n", "calendar: office\n    satisfaction: {low_below: 3}\n"),
    ).policies["default"]
    assert pol.is_low(2.9) and not pol.is_low(3.0)
    assert pol.csat_share([3.0, 2.9, None, 5]) == (2, 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-01", datetime(2026, 9, 30, 16, tzinfo=UTC)),  # start of the day, Shanghai
        ("2026-10-01T00:00:00+08:00", datetime(2026, 9, 30, 16, tzinfo=UTC)),
        ('"2026-10-05T12:30:00Z"', datetime(2026, 10, 5, 12, 30, tzinfo=UTC)),
    ],
)
def test_tracking_from(tmp_path, types, value, expected):
    text = BASE.replace(
        "type: dummy\nchannels", f"type: dummy\n    tracking_from: {value}\nchannels"
    )
    cfg = load(tmp_path, text)
    assert cfg.sources["itsm"].tracking_from == expected
    assert cfg.sources["itsm"].options == {}  # not a connector option
    assert load(tmp_path, BASE).sources["itsm"].tracking_from is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-10-01 08:00:00", "has no time zone"),
        ("last monday", "is not a date or an ISO instant"),
        ("2026-13-01", "is not a date or an ISO instant"),
    ],
)
def test_bad_tracking_from_is_named(tmp_path, types, value, message):
    text = BASE.replace(
        "type: dummy\nchannels", f"type: dummy\n    tracking_from: {value}\nchannels"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    [problem] = info.value.problems
    assert problem.path == "sources.itsm.tracking_from" and problem.line == 8
    assert message in problem.message
