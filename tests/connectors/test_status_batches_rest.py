"""The ``rest`` source reads ticket states a ``status_many`` call per batch
(config/examples/itop.yaml on the iTop fake).

The batch answers what one ``status`` call per ticket answers (same state,
category, closing time; the same error for a ticket iTop does not hold); a
page boundary inside a batch, a 429 and a refused batch lose nothing; without
``status_many`` the source reads one ticket per call. ``qloop validate`` names
the line of a ``status_many`` block it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from core.conf import load_config
from core.connector import TicketStatusBatches
from core.errors import ConfigError, FatalError, RetriableError
from core.loop.track import _statuses
from core.runtime import Runtime
from tests.connectors.rest_examples import example, source
from tests.fakes.itop import PASSWORD, FakeItop
from tests.fakes.server import serve

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
REFS = [str(k) for k in range(1, 13)]


@pytest.fixture
def itop() -> Iterator[tuple[FakeItop, dict[str, str]]]:
    fake = FakeItop()
    fake.generate(12, seed="states", start=datetime(2026, 10, 1, 6, tzinfo=UTC), days=20)
    for key in range(1, 13):
        status = ["new", "assigned", "pending", "resolved", "closed", "rejected"][key % 6]
        fake.set_status(key, status, T0 + timedelta(minutes=key))
    with serve(fake.app()) as url:
        yield fake, {"ITOP_URL": url, "ITOP_PASSWORD": PASSWORD}


def _ticket(**changes: Any) -> dict[str, Any]:
    block = dict(example("itop", {"ITOP_URL": "http://x", "ITOP_PASSWORD": "p"}))
    ticket = dict(block["sources"]["itop"]["ticket"])
    ticket.update(changes)
    return {k: v for k, v in ticket.items() if v is not None}


def _answers(src: Any, refs: list[str]) -> list[Any]:
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(src.ticket_status(ref))
        except FatalError as exc:
            out.append(exc)
    return out


def _same(batch: list[Any], single: list[Any]) -> None:
    assert len(batch) == len(single)
    for a, b in zip(batch, single, strict=True):
        if isinstance(b, Exception):
            assert type(a) is type(b) and str(a) == str(b)
        else:
            assert a == b


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    asked = [*REFS, "999", "3"]  # a ticket iTop does not hold, one asked twice
    try:
        assert isinstance(src, TicketStatusBatches)
        before = fake.calls["rest"]
        many = src.ticket_statuses(asked)
        batch_calls = fake.calls["rest"] - before
        before = fake.calls["rest"]
        singles = _answers(src, asked)
        single_calls = fake.calls["rest"] - before
    finally:
        src.close()
    _same(many, singles)
    assert {s.category for s in many[:12]} >= {"closed", "resolved"}  # type: ignore[union-attr]
    assert many[3].closed_at == T0 + timedelta(minutes=4)  # type: ignore[union-attr]
    assert isinstance(many[-2], FatalError)  # unknown: the status call's error, as alone
    assert batch_calls == 1 + 1 and single_calls == len(asked)  # the batch, then 999 alone


def test_a_page_boundary_inside_a_batch_loses_nothing(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    many = dict(_ticket()["status_many"])
    many["form"] = {"json_data": {**many["form"]["json_data"], "limit": "{limit}",
                                  "page": "{page}"}}  # fmt: skip
    many.update(max_refs=5, paginator={"type": "page_number", "size": 2, "page_param": "page",
                                       "size_param": "limit", "in": "body"})  # fmt: skip
    src = source("itop", env, tmp_path, ticket=_ticket(status_many=many))
    try:
        before = fake.calls["rest"]
        found = src.ticket_statuses(REFS)  # type: ignore[attr-defined]
        # 5 + 5 + 2 tickets, 2 per page: pages 2+2+1, 2+2+1, 2 then an empty one
        assert fake.calls["rest"] - before == 3 + 3 + 2
        _same(found, _answers(src, REFS))
    finally:
        src.close()


def _runtime(sources: dict[str, Any]) -> Runtime:
    def call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RetriableError:
            return fn()

    return cast("Runtime", SimpleNamespace(source=sources.__getitem__, call=call))


def test_a_429_is_waited_and_a_refused_batch_is_read_ticket_by_ticket(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    rows = [SimpleNamespace(ticket_target="itop", ticket_ref=ref) for ref in REFS]
    try:
        expected = dict(zip(REFS, _answers(src, REFS), strict=True))
        fake.burst = 2
        _same(src.ticket_statuses(REFS), list(expected.values()))  # type: ignore[attr-defined]
        assert fake.burst == 0
        real = fake.operate

        def refuse_in(doc: dict[str, Any]) -> dict[str, Any]:  # a profile refused the OQL
            if " IN (" in str(doc.get("key")):
                return {"objects": None, "code": 1, "message": "Error: not allowed"}
            return real(doc)

        monkeypatch.setattr(fake, "operate", refuse_in)
        before = fake.calls["rest"]
        assert _statuses(_runtime({"itop": src}), rows) == expected
        assert fake.calls["rest"] - before == 1 + len(REFS)
    finally:
        src.close()


def test_without_the_batch_block_one_call_per_ticket(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    _, env = itop
    one = source("itop", env, tmp_path, ticket=_ticket(status_many=None))
    both = source("itop", env, tmp_path)
    try:
        assert not isinstance(one, TicketStatusBatches)
        assert isinstance(both, TicketStatusBatches)
        assert hasattr(both, "ticket_notes_many")  # the comment batch stays
    finally:
        one.close()
        both.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "/x", "ticket": "key", "field": "status"}, "needs {refs}"),
        ({"path": "/x/{refs}", "field": "status"}, "'ticket' is a required property"),
        ({"path": "/x/{refs}", "ticket": "key"}, "'field' is a required property"),
        ({"path": "/x/{refs}", "ticket": "key", "field": "s"}, "status_many needs closed_at"),
    ],
)
def test_validate_names_the_line_of_a_status_many_block_it_cannot_use(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    doc = example("itop", {"ITOP_URL": "http://x", "ITOP_PASSWORD": "p"})
    doc["database_url"] = "sqlite://"
    doc["sources"]["itop"]["ticket"] = _ticket(status_many=change)
    path = tmp_path / "itop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "status_many:" in text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    shown = str(caught.value) + "\n".join(str(p) for p in getattr(caught.value, "problems", []))
    assert f"itop.yaml:{line}" in shown and message in shown
