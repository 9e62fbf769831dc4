"""The ``rest`` source's YAML: validation with lines, templates, paginators from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connectors.kit.paging import OffsetPaginator, PageNumberPaginator, build_paginator
from connectors.kit.paths import read
from connectors.rest.calls import render
from core.conf import load_config
from core.errors import ConfigError
from tests.connectors.rest_examples import example


def test_validate_names_the_file_line_and_key_of_a_bad_option(tmp_path: Path) -> None:
    doc = example("zammad", {"ZAMMAD_TOKEN": "t"})
    doc["database_url"] = "sqlite://"
    doc["sources"]["zammad"]["list"]["paginator"]["type"] = "cursor_magic"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "cursor_magic" in text
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"ZAMMAD_TOKEN": "t"})
    shown = str(caught.value) + "\n".join(str(p) for p in getattr(caught.value, "problems", []))
    assert f"bad.yaml:{line}" in shown and "paginator" in shown


def test_templates_fill_placeholders_and_name_a_missing_one() -> None:
    body = {"key": "SELECT X WHERE d >= '{since}'", "n": ["{page}"], "json": "{{literal}}"}
    assert render(body, {"since": "2026-01-01", "page": 2}, "list.form") == {
        "key": "SELECT X WHERE d >= '2026-01-01'",
        "n": ["2"],
        "json": "{literal}",
    }
    with pytest.raises(ConfigError, match=r"list.form.key: no value for placeholder \{since\}"):
        render(body, {"page": 1}, "list.form")


def test_paginators_built_from_yaml_and_star_paths() -> None:
    assert build_paginator({"type": "offset", "size": 50}, "w") == OffsetPaginator(limit=50)
    assert build_paginator(
        {"type": "page_number", "size": 10, "size_param": "limit", "in": "body"}, "w"
    ) == PageNumberPaginator(size=10, size_param="limit")
    with pytest.raises(ConfigError, match=r"w\.type: unknown paginator"):
        build_paginator({"type": "nope"}, "w")
    with pytest.raises(ConfigError, match="bad options for the range paginator"):
        build_paginator({"type": "range", "size": 5, "colour": "red"}, "w")
    assert read({"objects": {"UserRequest::7": {"key": "7"}}}, "objects.*.key") == "7"
    assert read({"objects": None}, "objects.*.key") is None
