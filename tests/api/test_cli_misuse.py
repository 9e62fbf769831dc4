"""Ordinary misuse of the qloop command: a clear one-line error, no traceback, nothing created.

Each case runs the command as a user does (a subprocess in an empty folder)
or through ``main()``; every one must exit non-zero (or do something
meaningful), print no traceback, and leave no store behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect

from api.cli import main
from tests.utils.loop import sandbox_config

ROOT = Path(__file__).resolve().parents[2]


def qloop(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m api.cli ARGS`` in ``cwd`` with this worktree's code."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("QLOOP_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert needle in proc.stderr, proc.stderr


@pytest.fixture
def relative_store_config(tmp_path: Path) -> tuple[Path, Path]:
    """An empty working folder and a config whose store is ``qloop.db`` in it (the default)."""
    work = tmp_path / "work"
    work.mkdir()
    path = sandbox_config("sqlite:///qloop.db", tmp_path)
    return work, path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--log-level", "LOUD", "validate", "x.yaml"], "invalid choice: 'LOUD'"),
        (["serve", "--port", "99999"], "99999 is not a port number (1 to 65535)"),
        (["serve", "--port", "http"], "'http' is not a port number"),
        (["run", "--cycles", "0"], "--cycles: must be at least 1, got 0"),
        (["demo", "--incidents", "0"], "--incidents: must be at least 1, got 0"),
        (["outbox", "list", "--state", "bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = qloop(tmp_path, *args)
    assert_clean_error(proc, 2, needle)
    assert list(tmp_path.iterdir()) == []  # nothing created: no store, no demo folder


def test_a_bad_log_level_in_the_environment_is_a_usage_error(tmp_path: Path) -> None:
    proc = qloop(tmp_path, "validate", "x.yaml", env={"QLOOP_LOG_LEVEL": "LOUD"})
    assert_clean_error(proc, 2, "QLOOP_LOG_LEVEL: 'LOUD' is not one of")


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--period", "2026-10"],
        ["sources", "list"],
        ["sources", "rejects"],
        ["channels", "list"],
        ["outbox", "list"],
        ["review", "list"],
    ],
)
def test_read_only_commands_create_no_store(
    relative_store_config: tuple[Path, Path], args: list[str]
) -> None:
    work, path = relative_store_config
    proc = qloop(work, *args, "-c", str(path))
    assert_clean_error(proc, 1, "run `qloop run` first")
    assert f"no store at {Path('qloop.db')}" in proc.stderr
    assert list(work.iterdir()) == []


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    path = sandbox_config("postgresql://qloop:pw-not-shown@127.0.0.1:9/qloop", tmp_path)
    for args in (["outbox", "list"], ["run", "-q"]):
        proc = qloop(tmp_path, *args, "-c", str(path))
        assert_clean_error(proc, 1, "qloop: database error: ")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "pw-not-shown" not in proc.stderr


def test_validate_creates_nothing(relative_store_config: tuple[Path, Path]) -> None:
    work, path = relative_store_config
    proc = qloop(work, "validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert list(work.iterdir()) == []


def test_read_only_commands_leave_an_empty_database_empty(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL too: no qloop schema there means no store; nothing is migrated."""
    path = sandbox_config(database_url, tmp_path)
    if database_url.startswith("sqlite"):  # an existing but empty file is not a store either
        Path(database_url.removeprefix("sqlite:///")).touch()
    assert main(["sources", "list", "-c", str(path)]) == 1
    assert "no store at" in capsys.readouterr().err
    engine = create_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_read_only_commands_refuse_a_store_of_another_schema_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.store.db import make_engine, migrate

    db = tmp_path / "q.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine, "0003")
    engine.dispose()
    path = sandbox_config(f"sqlite:///{db}", tmp_path)
    assert main(["outbox", "list", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "is at schema revision 0003" in err and "to migrate it" in err
    engine = create_engine(f"sqlite:///{db}")
    try:
        assert "nonconformity_event" not in inspect(engine).get_table_names()  # not migrated
    finally:
        engine.dispose()


@pytest.fixture
def ran(tmp_path: Path) -> Path:
    """A config whose store holds one run of the loop."""
    path = sandbox_config(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, incidents=10)
    assert main(["run", "-c", str(path), "-q"]) == 0
    return path


def test_export_to_a_path_it_cannot_write_is_one_line(
    ran: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "below", Path("/proc/qloop-cannot-write-here")):
        capsys.readouterr()
        status = main(["export", "-c", str(ran), "--period", "2026-10", "--out", str(out)])
        err = capsys.readouterr().err
        assert status == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qloop: "), err
        assert "Traceback" not in err
    assert a_file.read_text() == "not a folder"


def test_outbox_replay_of_an_id_that_is_not_there_or_not_dead(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "replay", "999999", "-c", str(ran)]) == 1
    assert "no outbox item 999999" in capsys.readouterr().err
    from core.conf import load_config
    from core.runtime import open_runtime
    from core.store.models import OutboxItem

    rt = open_runtime(load_config(ran))
    try:
        with rt.db.session() as s:
            item = s.query(OutboxItem).order_by(OutboxItem.id).first()
            assert item is not None
            item_id, state = item.id, item.state
    finally:
        rt.close()
    assert state != "dead"
    assert main(["outbox", "replay", str(item_id), "-c", str(ran)]) == 1
    assert f"only dead items are replayed: {item_id} is {state}" in capsys.readouterr().err
    assert main(["outbox", "list", "--state", "sent", "-c", str(ran)]) == 0


def test_sources_list_of_an_unknown_name_is_an_error(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sources", "list", "nope", "-c", str(ran)]) == 2
    assert "unknown source 'nope'; known: itsm" in capsys.readouterr().err
    assert main(["sources", "list", "itsm", "-c", str(ran)]) == 0
    assert capsys.readouterr().out.startswith("itsm: type sandbox")


def test_a_reader_that_goes_away_is_not_an_error_trace(tmp_path: Path) -> None:
    """`qloop validate --show | head`: the pipe closes before qloop writes."""
    path = sandbox_config("sqlite:///q.db", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "validate", str(path), "--show"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting before qloop prints
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "Exception ignored" not in err, err


def test_a_broken_pipe_inside_main_ends_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Gone:
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    path = sandbox_config("sqlite:///q.db", tmp_path)
    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["validate", str(path)]) == 1
    assert capsys.readouterr().err == ""


TOKENS = """\
api:
  tokens:
    - {name: ops, token: "%(a)s", role: operator}
    - {name: ops, token: "%(b)s", role: qa-read}
    - {name: audit, token: "%(a)s", role: qa-read}
    - {name: ivr, token: "%(c)s", role: channel, channels: [phone, nowhere]}
    - {name: bot, token: "%(d)s", role: channel}
"""


def token_config(tmp_path: Path) -> tuple[Path, str]:
    path = sandbox_config("sqlite:///q.db", tmp_path)
    secrets = {"a": "A" * 20, "b": "B" * 20, "c": "C" * 20, "d": "D" * 20}
    text = path.read_text() + TOKENS % secrets
    path.write_text(text)
    return path, text


def test_validate_refuses_what_serve_refused_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, text = token_config(tmp_path)
    lines = text.splitlines()

    def line(needle: str) -> int:
        return next(i for i, t in enumerate(lines, 1) if needle in t)

    expected = [
        f"{path}:{line('B' * 20)}: api.tokens[1].name: "
        "token name 'ops' is used twice (first at api.tokens[0])",
        f"{path}:{line('name: audit')}: api.tokens[2].token: the same token is given twice "
        "(also at api.tokens[0]); give each holder its own",
        f"{path}:{line('name: ivr')}: api.tokens[3].channels[1]: channel 'nowhere' is not "
        "defined in channels (phone, survey-mail, survey-phone)",
        f"{path}:{line('name: bot')}: api.tokens[4].role: a token of role 'channel' must list "
        "the channels it may post for (channels:)",
    ]
    for command in (["validate", str(path)], ["serve", "-c", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == expected, err
        assert "A" * 20 not in err


def test_problem_messages_are_not_garbled_by_masking(tmp_path: Path) -> None:
    """Only secret values are masked: not role names, nor words of the message."""
    path = sandbox_config("sqlite:///q.db", tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["api"] = {
        "tokens": [
            {"name": "admin", "token": "short", "role": "operator"},
            {"name": "channel", "token": "${QA_TOKEN}", "role": "boss"},
        ]
    }
    path.write_text(yaml.safe_dump(doc))
    proc = qloop(tmp_path, "validate", str(path), env={"QA_TOKEN": "operator-token-1234567"})
    assert proc.returncode == 2
    assert "api.tokens[0].token: the value (hidden) is too short" in proc.stderr
    assert (
        "api.tokens[1].role: 'boss' is not one of ['admin', 'operator', 'qa-read', 'channel']"
        in proc.stderr
    )
    assert "operator-token-1234567" not in proc.stderr
    assert "'short'" not in proc.stderr


def test_a_secret_quoted_in_another_field_is_still_scrubbed(tmp_path: Path) -> None:
    path = sandbox_config("sqlite:///q.db", tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["api"] = {"tokens": [{"name": "ops", "token": "${OPS_TOKEN}", "role": "operator"}]}
    doc["timezone"] = "${OPS_TOKEN}"  # pasted into the wrong field
    path.write_text(yaml.safe_dump(doc))
    proc = qloop(tmp_path, "validate", str(path), env={"OPS_TOKEN": "Zs3cr3t-token-value-1"})
    assert proc.returncode == 2
    assert "Zs3cr3t-token-value-1" not in proc.stderr
    assert "timezone: '***' is not a time zone" in proc.stderr


def test_init_writes_a_config_that_validates_and_runs(tmp_path: Path) -> None:
    proc = qloop(tmp_path, "init")
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "qloop.yaml"
    assert written.read_text().startswith("# Written by `qloop init`")
    assert qloop(tmp_path, "validate", "qloop.yaml").returncode == 0
    again = qloop(tmp_path, "init")
    assert_clean_error(again, 1, "qloop.yaml exists; give another path, or --force")
    ran = qloop(tmp_path, "run", "-q")  # the default config file, in the working folder
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "qloop.db").is_file()
    listed = qloop(tmp_path, "sources", "list")
    assert listed.returncode == 0 and "last success" in listed.stdout, listed.stderr


def test_init_into_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    target.mkdir()
    assert main(["init", str(target)]) == 0
    assert (target / "qloop.yaml").is_file()
    assert main(["init", str(target), "--force"]) == 0


def test_every_command_and_option_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    thin = []
    for name, command in sub.choices.items():  # type: ignore[union-attr]
        if not command.description:
            thin.append(name)
        for action in command._actions:
            if action.help is None:
                thin.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    for action in parser._actions:
        if action.help is None:
            thin.append("/".join(action.option_strings) or action.dest)
    assert thin == [], textwrap.fill(", ".join(thin))


def test_demo_refuses_to_wipe_a_folder_that_is_not_a_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["demo", "--dir", str(precious), "--incidents", "5"]) == 1
    assert "is not empty and holds no earlier demo" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["demo", "--dir", str(a_file)]) == 1
    assert "is not a folder" in capsys.readouterr().err
