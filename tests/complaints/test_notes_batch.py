"""Ticket comments read a batch per call (TicketNotesBatches), one ticket per call otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from core.complaints.following import _notes_of
from core.connector import TicketNotes, TicketNotesBatches
from core.errors import FatalError, RetriableError
from core.records import TicketComment, TicketNote
from core.runtime import Runtime
from tests.connectors.test_sandbox_source import START, Clock, make, ticket


def test_the_sandbox_reads_a_batch_of_tickets_comments_as_one_by_one(tmp_path: Path) -> None:
    source = make(tmp_path, Clock(START))
    refs = [source.create_ticket(ticket(f"nc-{n}")).ref for n in range(3)]
    source.comment_ticket(refs[0], TicketComment("a", "Root cause: x"))
    source.comment_ticket(refs[0], TicketComment("b", "Rectification: y"))
    source.comment_ticket(refs[2], TicketComment("c", "seen"))
    asked = [*refs, "SBX-QA-99999", "JIRA-1"]
    answers = source.ticket_notes_many(asked)
    assert isinstance(source, TicketNotesBatches)
    assert answers[:4] == [source.ticket_notes(ref) for ref in asked[:4]]
    assert [len(a) for a in answers[:4]] == [2, 0, 1, 0]  # type: ignore[arg-type]
    assert isinstance(answers[4], FatalError)  # not one of its refs: the 404 of one call


class _Notes:
    """A source reading comments one ticket per call; ``calls`` counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ticket_notes(self, ref: str) -> list[TicketNote]:
        self.calls.append(ref)
        if ref == "gone":
            raise FatalError(f"no ticket {ref}")
        return [TicketNote(text=f"note of {ref}", at=None)]


class _Batches(_Notes):
    """The same, with a batch call whose answer for ``flaky`` is a retriable failure."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def ticket_notes_many(self, refs: Sequence[str]) -> list[list[TicketNote] | Exception]:
        self.batches.append(list(refs))
        return [
            RetriableError("503") if ref == "flaky" else [TicketNote(text=f"batch {ref}", at=None)]
            for ref in refs
        ]


def _runtime(sources: dict[str, Any]) -> Runtime:
    def call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RetriableError:
            return fn()  # one retry, as rt.call would after its wait

    return cast("Runtime", SimpleNamespace(source=sources.__getitem__, call=call))


def test_comments_are_read_a_batch_per_source_and_a_failed_ticket_again_alone() -> None:
    batches, single = _Batches(), _Notes()
    assert isinstance(single, TicketNotes) and not isinstance(single, TicketNotesBatches)
    rt = _runtime({"a": batches, "b": single, "c": object()})
    found = _notes_of(rt, [("a", "A-1"), ("a", "flaky"), ("b", "B-1"), ("b", "gone"), ("c", "C-1")])
    assert batches.batches == [["A-1", "flaky"]] and batches.calls == ["flaky"]
    assert found["A-1"] == [TicketNote(text="batch A-1", at=None)]
    assert found["flaky"] == [TicketNote(text="note of flaky", at=None)]  # read again alone
    assert single.calls == ["B-1", "gone"]
    assert found["B-1"] == [TicketNote(text="note of B-1", at=None)]
    assert isinstance(found["gone"], FatalError)
    assert "C-1" not in found  # that source cannot read comments
