"""A sandbox deployment with three months of incidents, run once through the loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.loop import run_once
from core.runtime import Runtime
from tests.utils.loop import Deployment, sandbox_config

MONTHS = ("2026-08", "2026-09", "2026-10")


def months_config(database_url: str, tmp_path: Path, incidents: int = 30) -> Path:
    """The sandbox config with one sandbox source per month of :data:`MONTHS`."""
    path = sandbox_config(database_url, tmp_path, incidents=incidents)
    import yaml

    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = doc["sources"].pop("itsm")
    for i, month in enumerate(MONTHS):
        doc["sources"][f"itsm-{month}"] = {
            **base,
            "month": month,
            "seed": f"m{i}",
            "tracking_from": f"{MONTHS[0]}-01",
        }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(months_config(database_url, tmp_path))
    yield dep
    dep.close()


@pytest.fixture
def loaded(deployment: Deployment) -> Runtime:
    """The deployment's runtime after one whole loop over the three months."""
    rt = deployment.open()
    run_once(rt)
    return rt
