"""The sandbox remote's batch calls answer as the same calls one by one would."""

from __future__ import annotations

from pathlib import Path

from connectors.sandbox.remote import RemoteState


def test_comment_tickets_comments_each_marker_once_and_skips_unknown_tickets(
    tmp_path: Path,
) -> None:
    state = RemoteState(tmp_path, "source", "itsm")
    one, two = state.create_tickets([("k1", {}), ("k2", {})], "2026-10-01T00:00:00+00:00")
    first = state.comment_ticket(one, "m:a", "already there", "t0")
    assert first is not None
    ids = state.comment_tickets(
        [
            (one, "m:a", "not written again", "t1"),
            (two, "m:a", "new", "t1"),
            (999, "m:a", "no such ticket", "t1"),
            (two, "m:b", "another", "t1"),
            (two, "m:a", "same marker twice in one batch", "t1"),
        ]
    )
    assert ids[0] == first and ids[2] is None
    assert ids[1] == ids[4] and len({ids[0], ids[1], ids[3]}) == 3
    assert state.ticket_comments(one) == ["already there"]
    assert state.ticket_comments(two) == ["new", "another"]
    assert state.tickets_notes([one, two, 999]) == {
        one: [("already there", "t0")],
        two: [("new", "t1"), ("another", "t1")],
    }
    state.close()
