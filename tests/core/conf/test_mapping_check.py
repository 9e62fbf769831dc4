"""`qloop validate` checks `mapping:` blocks (and the bundled mappings) with file, line and key."""

from __future__ import annotations

import importlib
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

import mappings
from api.cli import main
from core import registry
from core.conf import ConfigError, load_config, read_yaml
from core.conf.loader import LineIndex
from core.conf.mapping_check import bundled_problems, check_mapping, mapping_problems

CONFIG = """\
database_url: sqlite:///test.db
timezone: Asia/Shanghai
calendars:
  office:
    timezone: Asia/Shanghai
    hours: {mon-fri: "09:00-12:00,13:00-18:00"}
    holidays: {country: CN}
sources:
  itsm:
    type: sandbox
    month: "2026-10"
    mapping:
      record:
        titel: fields.summary
        contact:
          phone: fields.reporter.mobile
      status_map:
        Triage: in_progres
channels:
  phone:
    type: twilio_taskrouter
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: secret-token-value
    workspace_sid: WS0123456789abcdef0123456789abcdef
    workflow_sid: WW0123456789abcdef0123456789abcdef
    mapping:
      taskrouter:
        fields:
          scroe: csat
        wrapup:
          confirmd: resolved
        scale: [0, 10]
      studio:
        fieldz: null
  mail:
    type: sandbox
    role: survey
policies:
  default:
    calendar: office
    callback: {channel: phone}
    survey: {channel: mail, sample: {rate: 0.3}}
"""


@pytest.fixture
def real_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    for name in ("sandbox", "twilio"):
        importlib.reload(importlib.import_module(f"connectors.{name}"))


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_typos_in_mapping_blocks_are_errors_with_file_line_and_key(
    tmp_path: Path, real_types: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "qloop.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    found = {p.path: p for p in info.value.problems}
    expected = {
        "sources.itsm.mapping.record.titel": ("titel:", "did you mean 'title'?"),
        "sources.itsm.mapping.status_map.Triage": ("Triage: in_progres", "'in_progres' is not one"),
        "channels.phone.mapping.taskrouter.fields.scroe": ("scroe:", "did you mean 'score'?"),
        "channels.phone.mapping.taskrouter.wrapup.confirmd": ("confirmd:", "'confirmed'"),
        "channels.phone.mapping.studio.fieldz": ("fieldz: null", "did you mean 'fields'?"),
    }
    assert set(found) == set(expected), sorted(found)
    for key, (needle, words) in expected.items():
        problem = found[key]
        assert problem.file == str(path)
        assert problem.line == _line(CONFIG, needle), key
        assert words in problem.message, problem.message
    assert "twilio mapping" in found["channels.phone.mapping.taskrouter.fields.scroe"].message
    # the same through the CLI: one line per problem, file:line: key
    assert main(["validate", str(path)]) != 0
    captured = capsys.readouterr()
    err = captured.err + captured.out
    line = _line(CONFIG, "scroe:")
    assert f"{path}:{line}: channels.phone.mapping.taskrouter.fields.scroe" in err


def test_valid_overrides_and_removals_pass(tmp_path: Path, real_types: None) -> None:
    text = CONFIG
    for bad, good in [
        ("titel: fields.summary", "title: fields.summary"),
        ("in_progres", "in_progress"),
        ("scroe: csat", "score: csat"),
        ("confirmd: resolved", "confirmed: resolved"),
        ("fieldz: null", "fields: null"),  # null removes a default key
    ]:
        text = text.replace(bad, good)
    path = tmp_path / "qloop.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path, env={})
    assert cfg.channels["phone"].mapping["taskrouter"]["fields"] == {"score": "csat"}


def test_every_bundled_mapping_passes_its_schema() -> None:
    importlib.import_module("connectors")
    for name in mappings.available():
        assert bundled_problems(name) == [], name


def test_a_typo_in_a_mappings_file_names_that_file_and_line(tmp_path: Path) -> None:
    text = (Path(mappings.__file__).parent / "twilio.yaml").read_text(encoding="utf-8")
    old, new = "    comment: comment\n  scale: [1, 5]", "    coment: comment\n  scale: [1, 5]"
    broken = text.replace(old, new)
    assert broken != text
    path = tmp_path / "twilio.yaml"
    path.write_text(broken, encoding="utf-8")
    doc, index, _ = read_yaml(path)
    [problem] = check_mapping(doc, "twilio", index)
    assert problem.file == str(path)
    assert problem.path == "taskrouter.wrapup.coment"
    assert problem.line == _line(broken, "coment: comment")
    assert "did you mean 'comment'?" in problem.message


def test_a_mapping_block_for_a_type_without_mapping_is_reported(real_types: None) -> None:
    text = textwrap.dedent(
        """\
        channels:
          phone:
            type: sandbox
            role: callback
            mapping: {taskrouter: {}}
        """
    )
    data = yaml.safe_load(text)
    index = LineIndex("x.yaml", {("channels", "phone", "mapping"): 5})
    [problem] = mapping_problems(data, index)
    assert problem.line == 5 and "has no mapping" in problem.message


def test_bundled_mapping_checks_follow_the_file_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a copy of the mappings package with a typo: the check reads the file it finds
    copy = tmp_path / "mappings"
    shutil.copytree(Path(mappings.__file__).parent, copy)
    webhook = copy / "webhook.yaml"
    webhook.write_text(
        webhook.read_text(encoding="utf-8").replace("limit: 500", "limt: 500"), encoding="utf-8"
    )
    import core.conf.mapping_check as check

    monkeypatch.setattr(check.resources, "files", lambda _name: copy)
    [problem] = check.bundled_problems("webhook")
    assert problem.file == str(webhook) and problem.path == "poll.limt"
