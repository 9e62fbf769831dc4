"""The ``rest`` source reads ticket states a ``status_many`` call per batch
(config/examples/itop.yaml on the iTop fake).

The batch answers what one ``status`` call per ticket answers (same state,
category, closing time; the same error for a ticket iTop does not hold); a
page boundary inside a batch, a 429 and a refused batch lose nothing; without
``status_many`` the source reads one ticket per call. ``qloop validate`` names
the line of a ``status_many`` block it cannot use.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.connector import TicketStatusBatches
from core.errors import FatalError
from core.loop.track import _statuses
from tests.connectors.itop_batches import itop_ticket, paged, refuse_oql_in, validate_error
from tests.connectors.rest_examples import source
from tests.fakes.itop import PASSWORD, FakeItop
from tests.fakes.server import serve
from tests.utils.batch_reads import answers, assert_same, read_both, retrying_runtime

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


def test_the_batch_read_answers_what_one_read_per_ticket_answers(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    asked = [*REFS, "999", "3"]  # a ticket iTop does not hold, one asked twice
    try:
        assert isinstance(src, TicketStatusBatches)
        many, batch_calls, singles, single_calls = read_both(
            lambda: fake.calls["rest"], src.ticket_statuses, src.ticket_status, asked
        )
    finally:
        src.close()
    assert_same(many, singles)
    assert {s.category for s in many[:12]} >= {"closed", "resolved"}  # type: ignore[union-attr]
    assert many[3].closed_at == T0 + timedelta(minutes=4)  # type: ignore[union-attr]
    assert isinstance(many[-2], FatalError)  # unknown: the status call's error, as alone
    assert batch_calls == 1 + 1 and single_calls == len(asked)  # the batch, then 999 alone


def test_a_page_boundary_inside_a_batch_loses_nothing(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    fake, env = itop
    many = paged(itop_ticket()["status_many"])
    src = source("itop", env, tmp_path, ticket=itop_ticket(status_many=many))
    try:
        before = fake.calls["rest"]
        found = src.ticket_statuses(REFS)  # type: ignore[attr-defined]
        # 5 + 5 + 2 tickets, 2 per page: pages 2+2+1, 2+2+1, 2 then an empty one
        assert fake.calls["rest"] - before == 3 + 3 + 2
        assert_same(found, answers(src.ticket_status, REFS))
    finally:
        src.close()


def test_a_429_is_waited_and_a_refused_batch_is_read_ticket_by_ticket(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, env = itop
    src = source("itop", env, tmp_path)
    rows = [SimpleNamespace(ticket_target="itop", ticket_ref=ref) for ref in REFS]
    try:
        expected = dict(zip(REFS, answers(src.ticket_status, REFS), strict=True))
        fake.burst = 2
        assert_same(src.ticket_statuses(REFS), list(expected.values()))  # type: ignore[attr-defined]
        assert fake.burst == 0
        refuse_oql_in(fake, monkeypatch)
        before = fake.calls["rest"]
        assert _statuses(retrying_runtime({"itop": src}), rows) == expected
        assert fake.calls["rest"] - before == 1 + len(REFS)
    finally:
        src.close()


def test_without_the_batch_block_one_call_per_ticket(
    tmp_path: Path, itop: tuple[FakeItop, dict[str, str]]
) -> None:
    _, env = itop
    one = source("itop", env, tmp_path, ticket=itop_ticket(status_many=None))
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
    line, shown = validate_error(tmp_path, itop_ticket(status_many=change), "status_many:")
    assert f"itop.yaml:{line}" in shown and message in shown
