"""The ``rest`` source reads ticket comments back: one ``comments`` call per ticket, or a
``comments_many`` call per batch (config/examples/itop.yaml on the iTop fake).

The batch answers what one call per ticket answers (same comments, oldest first
by ``at``, same text and times); a page boundary inside a batch, a 429 and a
refused batch lose nothing; without ``comments_many`` the source reads one
ticket per call, and without a ``{ref}``-only ``comments`` call it reads none.
``qloop validate`` names the line of a ``comments_many`` block it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from core.complaints.following import _notes_of
from core.conf import load_config
from core.connector import TicketNotes, TicketNotesBatches
from core.errors import ConfigError, RetriableError
from core.runtime import Runtime
from tests.connectors.rest_examples import example, source
from tests.fakes.itop import PASSWORD, FakeItop
from tests.fakes.server import serve

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
ENV: dict[str, str] = {}


@pytest.fixture
def itop() -> Iterator[tuple[FakeItop, dict[str, str]]]:
    fake = FakeItop()
    fake.generate(12, seed="notes", start=datetime(2026, 10, 1, 6, tzinfo=UTC), days=20)
    for key in range(1, 13):
        for k in range(key % 4):  # 0 to 3 entries, written out of order
            fake.log(key, f"  Root cause {k} of {key}: 磁盘满  ", T0 + timedelta(hours=3 - k))
    fake.log(2, "same instant", T0 + timedelta(hours=3))
    with serve(fake.app()) as url:
        yield fake, {"ITOP_URL": url, "ITOP_PASSWORD": PASSWORD}


def _ticket(**changes: Any) -> dict[str, Any]:
    block = dict(example("itop", {"ITOP_URL": "http://x", "ITOP_PASSWORD": "p"}))
    ticket = dict(block["sources"]["itop"]["ticket"])
    ticket.update(changes)
    return {k: v for k, v in ticket.items() if v is not None}


REFS = [str(k) for k in range(1, 13)]


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    asked = [*REFS, "999", "3"]  # a ticket iTop does not hold, one asked twice
    try:
        assert isinstance(src, TicketNotesBatches)
        before = fake.calls["rest"]
        many = src.ticket_notes_many(asked)
        batch_calls = fake.calls["rest"] - before
        before = fake.calls["rest"]
        singles = [src.ticket_notes(ref) for ref in asked]
        single_calls = fake.calls["rest"] - before
    finally:
        src.close()
    assert many == singles
    assert [len(n) for n in many[:4]] == [1, 3, 3, 0]
    assert [n.text for n in many[2]] == [f"Root cause {k} of 3: 磁盘满" for k in (2, 1, 0)]
    assert [n.at for n in many[2]] == [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    assert batch_calls == 1 and single_calls == len(asked)


def test_a_page_boundary_inside_a_batch_loses_nothing(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    many = dict(_ticket()["comments_many"])
    many["form"] = {"json_data": {**many["form"]["json_data"], "limit": "{limit}",
                                  "page": "{page}"}}  # fmt: skip
    many.update(max_refs=5, paginator={"type": "page_number", "size": 2, "page_param": "page",
                                       "size_param": "limit", "in": "body"})  # fmt: skip
    src = source("itop", env, tmp_path, ticket=_ticket(comments_many=many))
    try:
        before = fake.calls["rest"]
        found = src.ticket_notes_many(REFS)  # type: ignore[attr-defined]
        # 5 + 5 + 2 tickets, 2 per page: pages 2+2+1, 2+2+1, 2 then an empty one
        assert fake.calls["rest"] - before == 3 + 3 + 2
        assert found == [src.ticket_notes(ref) for ref in REFS]  # type: ignore[attr-defined]
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
    try:
        expected = {ref: src.ticket_notes(ref) for ref in REFS}  # type: ignore[attr-defined]
        fake.burst = 2
        assert src.ticket_notes_many(REFS) == list(expected.values())  # type: ignore[attr-defined]
        assert fake.burst == 0
        real = fake.operate

        def refuse_in(doc: dict[str, Any]) -> dict[str, Any]:  # a profile refused the OQL
            if " IN (" in str(doc.get("key")):
                return {"objects": None, "code": 1, "message": "Error: not allowed"}
            return real(doc)

        monkeypatch.setattr(fake, "operate", refuse_in)
        before = fake.calls["rest"]
        found = _notes_of(_runtime({"itop": src}), [("itop", ref) for ref in REFS])
        assert found == expected
        assert fake.calls["rest"] - before == 1 + len(REFS)
    finally:
        src.close()


def test_without_the_batch_block_one_call_per_ticket_and_none_without_comments(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    _, env = itop
    one = source("itop", env, tmp_path, ticket=_ticket(comments_many=None))
    marker = dict(_ticket()["comments"])
    marker["form"] = {"json_data": {**marker["form"]["json_data"], "key": "{marker}"}}
    none = source("itop", env, tmp_path, ticket=_ticket(comments=marker, comments_many=None))
    try:
        assert isinstance(one, TicketNotes) and not isinstance(one, TicketNotesBatches)
        assert not isinstance(none, TicketNotes)  # its comments call needs more than {ref}
    finally:
        one.close()
        none.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"comments_many": {"path": "/x", "ticket": "key"}}, "needs {refs}"),
        ({"comments_many": {"path": "/x/{refs}"}}, "'ticket' is a required property"),
        ({"comments": None}, "'comments' is a dependency of 'comments_many'"),
    ],
)
def test_validate_names_the_line_of_a_batch_block_it_cannot_use(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    doc = example("itop", {"ITOP_URL": "http://x", "ITOP_PASSWORD": "p"})
    doc["database_url"] = "sqlite://"
    doc["sources"]["itop"]["ticket"] = _ticket(**change)
    path = tmp_path / "itop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    key = "comments_many:" if "comments_many" in change else "    ticket:"
    line = next(n for n, text in enumerate(lines, 1) if key in text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    shown = str(caught.value) + "\n".join(str(p) for p in getattr(caught.value, "problems", []))
    assert f"itop.yaml:{line}" in shown and message in shown
