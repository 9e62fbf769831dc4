"""Three sandbox months run once through the loop, with the policy's KPI targets set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.loop import run_once
from core.runtime import Runtime
from tests.evidence.conftest import months_config
from tests.utils.loop import Deployment

TARGETS = {"callback_coverage": 0.5, "callback_on_time": 0.99, "response": 0.8}


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    path = months_config(database_url, tmp_path)
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["policies"]["default"]["kpi"] = TARGETS
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    dep = Deployment(path)
    yield dep
    dep.close()


@pytest.fixture
def loaded(deployment: Deployment) -> Runtime:
    rt = deployment.open()
    run_once(rt)
    return rt
