"""The ``rest`` source reads ticket comments back: one ``comments`` call per ticket, or a
``comments_many`` call per batch (config/examples/itop.yaml on the iTop fake).

The batch answers what one call per ticket answers (same comments, oldest first
by ``at``, same text and times); a page boundary inside a batch, a 429 and a
refused batch lose nothing; without ``comments_many`` the source reads one
ticket per call, and without a ``{ref}``-only ``comments`` call it reads none.
``qloop validate`` names the line of a ``comments_many`` block it cannot use.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.complaints.following import _notes_of
from core.connector import TicketNotes, TicketNotesBatches
from tests.connectors.itop_batches import itop_ticket, paged, refuse_oql_in, validate_error
from tests.connectors.rest_examples import source
from tests.fakes.itop import PASSWORD, FakeItop
from tests.fakes.server import serve
from tests.utils.batch_reads import read_both, retrying_runtime

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


REFS = [str(k) for k in range(1, 13)]


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    asked = [*REFS, "999", "3"]  # a ticket iTop does not hold, one asked twice
    try:
        assert isinstance(src, TicketNotesBatches)
        many, batch_calls, singles, single_calls = read_both(
            lambda: fake.calls["rest"], src.ticket_notes_many, src.ticket_notes, asked
        )
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
    many = paged(itop_ticket()["comments_many"])
    src = source("itop", env, tmp_path, ticket=itop_ticket(comments_many=many))
    try:
        before = fake.calls["rest"]
        found = src.ticket_notes_many(REFS)  # type: ignore[attr-defined]
        # 5 + 5 + 2 tickets, 2 per page: pages 2+2+1, 2+2+1, 2 then an empty one
        assert fake.calls["rest"] - before == 3 + 3 + 2
        assert found == [src.ticket_notes(ref) for ref in REFS]  # type: ignore[attr-defined]
    finally:
        src.close()


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
        refuse_oql_in(fake, monkeypatch)
        before = fake.calls["rest"]
        found = _notes_of(retrying_runtime({"itop": src}), [("itop", ref) for ref in REFS])
        assert found == expected
        assert fake.calls["rest"] - before == 1 + len(REFS)
    finally:
        src.close()


def test_without_the_batch_block_one_call_per_ticket_and_none_without_comments(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    _, env = itop
    one = source("itop", env, tmp_path, ticket=itop_ticket(comments_many=None))
    marker = dict(itop_ticket()["comments"])
    marker["form"] = {"json_data": {**marker["form"]["json_data"], "key": "{marker}"}}
    none = source("itop", env, tmp_path, ticket=itop_ticket(comments=marker, comments_many=None))
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
    key = "comments_many:" if "comments_many" in change else "    ticket:"
    line, shown = validate_error(tmp_path, itop_ticket(**change), key)
    assert f"itop.yaml:{line}" in shown and message in shown
