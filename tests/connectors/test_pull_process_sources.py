"""``pull_process`` on GLPI, ServiceNow and the REST source: the same rows as one process.

Each deployment has two sources of the same type on the same fake: one
pulling in one process, one fetching and converting in a forked child
(:mod:`connectors.kit.child`). Both first syncs must store the same
incidents (every column but the id, the source and the ingest instants)
with the same status histories, and find nothing new on a second pull.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from connectors.kit import stream
from connectors.kit.child import in_child
from core.loop.pull import pull
from core.runtime import Runtime
from core.store.models import Incident, StatusEvent
from tests.connectors import test_servicenow
from tests.connectors.rest_examples import example
from tests.connectors.test_first_contact_sources import glpi_deployment, glpi_options
from tests.fakes.glpi import FakeGlpi
from tests.fakes.server import serve
from tests.fakes.servicenow import FakeServiceNow
from tests.fakes.zammad import TOKEN, FakeZammad
from tests.utils.loop import Deployment

MONTH = datetime(2026, 10, 1, 6, 0, tzinfo=UTC)
SKIP = {"id", "source", "ingested_at", "changed_at"}


def rows(rt: Runtime, source: str) -> dict[str, tuple[Any, ...]]:
    """Each stored incident of ``source`` by external id: its columns and its history."""
    names = [c.name for c in Incident.__table__.columns if c.name not in SKIP]
    out: dict[str, tuple[Any, ...]] = {}
    with rt.db.session() as s:
        for inc in s.scalars(select(Incident).where(Incident.source == source)):
            events = s.execute(
                select(StatusEvent.seq, StatusEvent.at, StatusEvent.status, StatusEvent.category)
                .where(StatusEvent.incident_id == inc.id)
                .order_by(StatusEvent.seq)
            ).all()
            out[inc.external_id] = (
                tuple(getattr(inc, n) for n in names),
                tuple(tuple(e) for e in events),
            )
    return out


@pytest.fixture(autouse=True)
def children(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pulls run in a child process (``where`` of each), as the driver started them."""
    started: list[str] = []

    def counted(produce: Any, where: str, *args: Any) -> Any:
        started.append(where)
        return in_child(produce, where, *args)

    monkeypatch.setattr(stream, "in_child", counted)
    return started


def assert_same_pulls(
    dep: Deployment, one: str, child: str, count: int, children: list[str]
) -> None:
    try:
        rt = dep.open()
        a = pull(rt, one)
        assert children == []
        b = pull(rt, child)
        assert children == [f"sources.{child}"]
        assert a.counts["created"] == b.counts["created"] == count
        assert a.counts["rejected"] == b.counts["rejected"]
        stored_one, stored_child = rows(rt, one), rows(rt, child)
        assert len(stored_one) == count
        assert stored_child == stored_one
        assert pull(rt, child).counts["seen"] == 0  # its cursor was committed as in one
    finally:
        dep.close()


def add_child_source(path: Path, name: str, child: str) -> None:
    """Copy source ``name`` of the config at ``path`` as ``child``, with ``pull_process``."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["sources"][child] = {**doc["sources"][name], "pull_process": True}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def glpi() -> Iterator[str]:
    fake = FakeGlpi()
    fake.generate(120, seed="month", start=MONTH, days=28)
    with serve(fake.app()) as url:
        yield f"{url}/apirest.php"


def test_glpi_pull_process_stores_what_one_process_stores(
    database_url: str, tmp_path: Path, glpi: str, children: list[str]
) -> None:
    dep = glpi_deployment(database_url, tmp_path, glpi, page_size=25, detail_workers=3)
    add_child_source(dep.path, "glpi", "glpi_child")
    doc = yaml.safe_load(dep.path.read_text(encoding="utf-8"))
    assert doc["sources"]["glpi_child"] == {
        "type": "glpi",
        **glpi_options(glpi, page_size=25, detail_workers=3),
        "pull_process": True,
    }
    assert_same_pulls(dep, "glpi", "glpi_child", 120, children)


def test_servicenow_pull_process_stores_what_one_process_stores(
    database_url: str, tmp_path: Path, children: list[str]
) -> None:
    fake = FakeServiceNow()
    fake.generate(70, seed="month", start=MONTH, days=28)
    with serve(fake.app()) as url:
        dep = test_servicenow.deployment(database_url, tmp_path, url)
        add_child_source(dep.path, "sn", "sn_child")
        assert_same_pulls(dep, "sn", "sn_child", 70, children)


def test_rest_pull_process_stores_what_one_process_stores(
    database_url: str, tmp_path: Path, children: list[str]
) -> None:
    fake = FakeZammad()
    fake.generate(130, seed="month", start=MONTH, days=28)  # two pages and more
    with serve(fake.app()) as url:
        doc = example("zammad", {"ZAMMAD_URL": url, "ZAMMAD_TOKEN": TOKEN})
        doc["database_url"] = database_url
        doc["state_dir"] = str(tmp_path / "state")
        doc["sources"]["zammad_child"] = {**doc["sources"]["zammad"], "pull_process": True}
        path = tmp_path / "qloop.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        assert_same_pulls(Deployment(path), "zammad", "zammad_child", 130, children)
