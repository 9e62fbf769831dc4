"""``qloop schema`` and docs/connectors.md: every connector option documented where users look."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import connectors  # noqa: F401  registers the built-in types
from api.cli import main
from api.cli_schema import reference_markdown
from core import registry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "connectors.md"


def test_docs_connectors_md_is_the_generated_reference() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/connectors.md is out of date: run `qloop schema > docs/connectors.md`"
    )


def _properties(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}{name}", prop
        yield from _properties(prop, f"{path}{name}.")
        for form in prop.get("oneOf", ()):
            yield from _properties(form, f"{path}{name}.")


@pytest.mark.parametrize(
    ("kind", "name"), [(k, n) for k in ("source", "channel") for n in registry.names(k)]
)
def test_every_connector_option_has_a_description(kind: str, name: str) -> None:
    schema = registry.get(kind, name).options_schema  # type: ignore[arg-type]
    missing = [p for p, prop in _properties(schema) if not prop.get("description")]
    assert missing == [], f"{kind} {name}: options without a description: {missing}"


def test_every_option_of_every_type_is_in_the_reference() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in ("source", "channel"):
        for name in registry.names(kind):  # type: ignore[arg-type]
            assert f"## `{name}` ({kind})" in text
            schema = registry.get(kind, name).options_schema  # type: ignore[arg-type]
            for path, _ in _properties(schema):
                assert f"| `{path}` |" in text, (kind, name, path)


def test_schema_of_one_type_as_markdown_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "jira_sm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# `jira_sm` (source)")
    assert "Give exactly one of: `base_url` | `cloud_id`." in out
    assert "| `jql` | string | yes |  |  | the incident filter" in out
    assert '| `timezone_mode` | string |  | `"epoch"` | `"epoch"`, `"profile"` |' in out
    assert "| `auth.bearer_token` | string | yes |" in out
    assert main(["schema", "jira_sm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(
        json.dumps(registry.get("source", "jira_sm").options_schema)
    )
    assert main(["schema", "sandbox", "--kind", "channel"]) == 0
    out = capsys.readouterr().out
    assert "(channel)" in out and "(source)" not in out


def test_schema_of_an_unknown_type_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "zendesk"]) == 2
    err = capsys.readouterr().err
    assert "unknown connector type 'zendesk'" in err and "jira_sm" in err and "webhook" in err
