"""The iTop example's ticket block (config/examples/itop.yaml) and what the ``rest``
batch-read tests do with it (test_status_batches_rest.py, test_notes_batch_rest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.conf import load_config
from core.errors import ConfigError
from tests.connectors.rest_examples import example
from tests.fakes.itop import FakeItop

PLACEHOLDERS = {"ITOP_URL": "http://x", "ITOP_PASSWORD": "p"}


def itop_ticket(**changes: Any) -> dict[str, Any]:
    """The example's ``ticket`` block with ``changes``; a change to None drops the key."""
    block = dict(example("itop", PLACEHOLDERS))
    ticket = dict(block["sources"]["itop"]["ticket"])
    ticket.update(changes)
    return {k: v for k, v in ticket.items() if v is not None}


def paged(call: dict[str, Any]) -> dict[str, Any]:
    """A batch call of the example, 5 tickets a call, paged 2 records a page in its body."""
    many = dict(call)
    many["form"] = {"json_data": {**many["form"]["json_data"], "limit": "{limit}",
                                  "page": "{page}"}}  # fmt: skip
    many.update(max_refs=5, paginator={"type": "page_number", "size": 2, "page_param": "page",
                                       "size_param": "limit", "in": "body"})  # fmt: skip
    return many


def refuse_oql_in(fake: FakeItop, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the fake refuses every ``IN (…)`` OQL query, as a profile may."""
    real = fake.operate

    def refuse_in(doc: dict[str, Any]) -> dict[str, Any]:
        if " IN (" in str(doc.get("key")):
            return {"objects": None, "code": 1, "message": "Error: not allowed"}
        return real(doc)

    monkeypatch.setattr(fake, "operate", refuse_in)


def validate_error(tmp_path: Path, ticket: dict[str, Any], key: str) -> tuple[int, str]:
    """Load the example with ``ticket`` as its ticket block: the line of the first line
    holding ``key`` in the written file, and all the ConfigError says (it must raise)."""
    doc = example("itop", PLACEHOLDERS)
    doc["database_url"] = "sqlite://"
    doc["sources"]["itop"]["ticket"] = ticket
    path = tmp_path / "itop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if key in text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    shown = str(caught.value) + "\n".join(str(p) for p in getattr(caught.value, "problems", []))
    return line, shown
