"""YAML loading with line numbers, duplicate keys, syntax errors and ${ENV} interpolation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.conf import (
    ConfigError,
    LineIndex,
    dotted,
    format_problems,
    interpolate,
    load_config,
    load_yaml,
    read_yaml,
)


def write(tmp_path: Path, text: str, name: str = "qloop.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_lines_of_keys_and_items(tmp_path):
    path = write(
        tmp_path,
        """
        # comment
        a: 1
        b:
          c:
            - x
            -
              d: 2
          e: {f: 3}
        """,
    )
    data, index = load_yaml(path)
    assert data == {"a": 1, "b": {"c": ["x", {"d": 2}], "e": {"f": 3}}}
    assert index.line(("a",)) == 2
    assert index.line(("b",)) == 3
    assert index.line(("b", "c")) == 4
    assert index.line(("b", "c", 0)) == 5
    assert index.line(("b", "c", 1)) == 7  # the item starts on the line of its first key
    assert index.line(("b", "c", 1, "d")) == 7
    assert index.line(("b", "e", "f")) == 8
    # a missing key: the nearest existing parent
    assert index.line(("b", "e", "missing", "deeper")) == 8
    assert index.line(("nope",)) == 2  # the document's first line


def test_dotted_paths():
    assert dotted(("policies", "default", "response", "P4")) == "policies.default.response.P4"
    assert dotted(("policies", "p", "survey", "channels", 1)) == "policies.p.survey.channels[1]"
    assert dotted(()) == ""


def test_dates_are_iso_strings_and_keys_are_text(tmp_path):
    path = write(
        tmp_path,
        """
        extra_workdays: [2026-02-14]
        on: yes
        1: one
        """,
    )
    data, _ = load_yaml(path)
    assert data == {"extra_workdays": ["2026-02-14"], "on": True, "1": "one"}


def test_duplicate_keys_name_both_lines(tmp_path):
    path = write(
        tmp_path,
        """
        a: 1
        b:
          c: 1
          d: 2
          c: 3
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    (problem,) = info.value.problems
    assert problem.line == 5
    assert problem.path == "b.c"
    assert "line 3" in problem.message and "duplicate" in problem.message


def test_syntax_error_reports_the_broken_line(tmp_path):
    lines = [f"key{i}: value{i}" for i in range(1, 21)]
    lines[16] = "key17: oops: this is not yaml"  # line 17
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    (problem,) = info.value.problems
    assert problem.line == 17
    assert problem.file == str(path)
    assert str(path) in str(info.value)
    assert f"{path}:17:" in format_problems(info.value)


def test_unclosed_quote_points_at_its_start(tmp_path):
    path = write(
        tmp_path,
        """
        a: 1
        b: "never closed
        c: 2
        d: 3
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert info.value.problems[0].line == 2


def test_syntax_error_does_not_quote_the_text(tmp_path):
    path = write(
        tmp_path,
        """
        api_token: hunter2-very-secret: x
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "hunter2" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path / "nope.yaml")
    assert "cannot read" in info.value.problems[0].message


def test_merge_keys_and_anchors(tmp_path):
    path = write(
        tmp_path,
        """
        x-base: &base
          type: sandbox
          seed: s
        sources:
          one:
            <<: *base
            seed: own
        """,
    )
    data, index = load_yaml(path)
    assert data["sources"]["one"] == {"type": "sandbox", "seed": "own"}
    assert index.line(("sources", "one", "seed")) == 7
    assert index.line(("sources", "one", "type")) == 2  # where the anchor defines it


def test_recursive_alias_is_a_problem(tmp_path):
    path = write(
        tmp_path,
        """
        a: &loop
          b: *loop
        """,
    )
    with pytest.raises(ConfigError, match="recursive"):
        load_yaml(path)


def interp(tmp_path: Path, text: str, env: dict[str, str]):
    data, index, problems = read_yaml(write(tmp_path, text))
    assert problems == []
    return interpolate(data, index, env)


def test_interpolation_forms(tmp_path):
    result = interp(
        tmp_path,
        """
        plain: ${HOST}
        default: ${MISSING:-fallback}
        empty_var_uses_default: ${EMPTY:-fallback}
        inside: "postgresql://${HOST}:${PORT:-5432}/db"
        dollars: "cost $$5, $$${HOST}"
        lone: "$HOME stays"
        """,
        {"HOST": "db.local", "EMPTY": ""},
    )
    assert result.problems == []
    assert result.data == {
        "plain": "db.local",
        "default": "fallback",
        "empty_var_uses_default": "fallback",
        "inside": "postgresql://db.local:5432/db",
        "dollars": "cost $5, $db.local",
        "lone": "$HOME stays",
    }
    assert result.env_sources[("inside",)] == ("HOST", "PORT")
    assert result.env_values == {"HOST": "db.local"}


def test_whole_plain_reference_is_retyped(tmp_path):
    result = interp(
        tmp_path,
        """
        port: ${PORT:-5432}
        port_env: ${PORT2}
        ratio: ${RATIO:-0.25}
        flag: ${FLAG:-true}
        nothing: ${NOTHING:-}
        quoted: "${PORT:-5432}"
        quoted_empty: "${NOTHING:-}"
        pin: ${PIN}
        mixed: ${PORT:-5432}x
        """,
        {"PORT2": "6379", "PIN": "0042"},
    )
    assert result.problems == []
    data = result.data
    assert data["port"] == 5432 and isinstance(data["port"], int)
    assert data["port_env"] == 6379
    assert data["ratio"] == 0.25
    assert data["flag"] is True
    assert data["nothing"] is None
    assert data["quoted"] == "5432"
    assert data["quoted_empty"] == ""
    assert data["pin"] == "0042"  # not read as an octal number
    assert data["mixed"] == "5432x"


def test_missing_variable_is_a_problem_at_its_line_and_key(tmp_path):
    result = interp(
        tmp_path,
        """
        sources:
          jira:
            auth:
              api_token: ${JIRA_TOKEN}
              other: ${OTHER:-}
        """,
        {},
    )
    (problem,) = result.problems
    assert problem.line == 4
    assert problem.path == "sources.jira.auth.api_token"
    assert "JIRA_TOKEN" in problem.message


def test_malformed_reference(tmp_path):
    result = interp(
        tmp_path,
        """
        a: ok
        b: "${not closed"
        """,
        {},
    )
    (problem,) = result.problems
    assert problem.line == 2 and "malformed" in problem.message


def test_interpolation_leaves_input_untouched(tmp_path):
    data, index, _ = read_yaml(write(tmp_path, "a: ${X:-1}\n"))
    interpolate(data, index, {})
    assert data == {"a": "${X:-1}"}


def test_load_config_reports_missing_env_without_default(tmp_path):
    path = write(
        tmp_path,
        """
        database_url: ${QLOOP_TEST_DB_URL}
        redis_url: ${QLOOP_TEST_REDIS:-}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (1, "database_url")
    assert "QLOOP_TEST_DB_URL" in problem.message


def test_load_config_uses_defaults_and_env(tmp_path):
    path = write(
        tmp_path,
        """
        database_url: ${QLOOP_TEST_DB_URL:-sqlite:///qloop.db}
        redis_url: ${QLOOP_TEST_REDIS:-}
        """,
    )
    cfg = load_config(path, env={})
    assert cfg.database_url == "sqlite:///qloop.db"
    assert cfg.redis_url is None
    cfg = load_config(path, env={"QLOOP_TEST_REDIS": "redis://localhost:6379/1"})
    assert cfg.redis_url == "redis://localhost:6379/1"


def test_empty_file(tmp_path):
    path = write(tmp_path, "# only a comment\n")
    with pytest.raises(ConfigError, match="empty"):
        load_config(path, env={})


def test_line_index_problem_helper():
    index = LineIndex("f.yaml", {("a",): 3})
    problem = index.problem(("a", "b"), "bad")
    assert (problem.file, problem.line, problem.path) == ("f.yaml", 3, "a.b")
    assert str(problem) == "f.yaml:3: a.b: bad"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_escaped_dollars_round_trip(text):
    index = LineIndex("f.yaml")
    result = interpolate({"k": text.replace("$", "$$")}, index, {"X": "y"})
    assert result.problems == []
    assert result.data == {"k": text}
    assert result.env_sources == {}
