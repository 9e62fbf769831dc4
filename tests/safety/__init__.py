"""The red-team corpus (issue 10): hostile inputs as data, and the tests that iterate over them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def corpus(name: str) -> Any:
    """The corpus ``<name>.json`` of this folder."""
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
