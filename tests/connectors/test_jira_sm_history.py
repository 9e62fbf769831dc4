"""The status history read from an expanded changelog (connectors.jira_sm.issues)."""

from __future__ import annotations

from connectors.jira_sm.issues import status_history


def _h(at: str, *moves: tuple[str, str]) -> dict:
    items = [{"field": "status", "fromString": a, "toString": b} for a, b in moves]
    return {"created": at, "items": [{"field": "assignee", "toString": "x"}, *items]}


def test_status_changes_oldest_first_ties_in_the_order_given() -> None:
    histories = [
        _h("2026-03-03T10:00:00.000+0000", ("Open", "In Progress")),
        _h("2026-03-03T09:00:00.000+0000", ("New", "Open"), ("Open", "Waiting")),
        _h("2026-03-03T11:00:00.000+0000", ("In Progress", "Done")),
        _h("2026-03-03T09:00:00.000+0000", ("Waiting", "Open")),
    ]
    got = [(e["at"][11:16], e["from"], e["status"]) for e in status_history(histories)]
    assert got == [
        ("09:00", "New", "Open"),
        ("09:00", "Open", "Waiting"),
        ("09:00", "Waiting", "Open"),
        ("10:00", "Open", "In Progress"),
        ("11:00", "In Progress", "Done"),
    ]
    ordered = [histories[1], histories[3], histories[0], histories[2]]
    assert status_history(ordered) == status_history(histories)
    assert status_history([]) == []
