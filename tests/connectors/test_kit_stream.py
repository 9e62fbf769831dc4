"""The source kit's cursor, options helper and pull driver."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.kit import cursor as cursor_mod
from connectors.kit.cursor import Cursor, to_ms
from connectors.kit.options import Options
from connectors.kit.stream import Driver, Raw
from core.errors import ConfigError, InputError, StateError
from core.records import Category, IncidentRecord

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


def test_cursor_round_trips_and_skips_only_what_was_delivered() -> None:
    mark = Cursor.decode(None, 120, "sources.x")
    assert mark.since() is None and mark.encode() is None
    shanghai = timezone(timedelta(hours=8))
    mark.add("A", to_ms(T0.astimezone(shanghai)))  # the zone never changes the instant
    mark.add("B", to_ms(T0 + timedelta(seconds=30)))
    again = Cursor.decode(mark.encode(), 120, "sources.x")
    assert again.since() == T0 + timedelta(seconds=30) - timedelta(minutes=2)
    assert again.is_seen("A", to_ms(T0)) and not again.is_seen("A", to_ms(T0) + 1)
    again.add("C", to_ms(T0 + timedelta(minutes=10)))  # A and B fall out of the window
    assert sorted(Cursor.decode(again.encode(), 120, "x").seen) == ["C"]
    assert Cursor.decode("2026-10-05T08:00:00+00:00", 60, "x").updated_ms == to_ms(T0)


def test_cursor_errors_name_the_source_and_the_cap_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StateError, match=r"sources\.sn: the stored cursor is not a source cursor"):
        Cursor.decode('{"w": 17}', 120, "sources.sn")
    with pytest.raises(StateError):
        Cursor.decode("2026-10-05T08:00:00", 120, "sources.sn")  # naive
    monkeypatch.setattr(cursor_mod, "SEEN_CAP", 3)
    mark = Cursor(overlap_ms=3_600_000)
    for n in range(5):
        mark.add(f"K{n}", to_ms(T0) + n)
    assert sorted(mark.seen) == ["K2", "K3", "K4"]


def test_options_read_schema_defaults_and_name_a_bad_value() -> None:
    schema = {"properties": {"page_size": {"type": "integer", "default": 100},
                             "overlap": {"type": "string", "default": "2m"}}}  # fmt: skip
    opts = Options("sources.sn", {"base_url": "https://x", "since": "2026-10-01"}, schema)
    assert opts.integer("page_size") == 100 and opts.seconds("overlap") == 120
    assert opts.text("base_url") == "https://x" and opts.optional_text("nope") is None
    with pytest.raises(ConfigError, match=r"sources.sn.base_url: expected an integer"):
        opts.integer("base_url")
    with pytest.raises(ConfigError, match=r"sources.sn.since: expected an ISO 8601 instant"):
        opts.instant("since")
    with pytest.raises(ConfigError, match="duration"):
        Options("s", {"overlap": "1bd"}, schema).seconds("overlap")


class Tool:
    """Records updated at given instants, served oldest first in pages of 3."""

    def __init__(self) -> None:
        self.rows: dict[str, datetime] = {f"R{n}": T0 + timedelta(minutes=n) for n in range(10)}
        self.converted: list[int] = []

    def fetch(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        rows = sorted(
            (at, key)
            for key, at in self.rows.items()
            if (since is None or at >= since) and (until is None or at < until)
        )
        for i in range(0, len(rows), 3):
            yield [{"id": k, "at": at.isoformat()} for at, k in rows[i : i + 3]]

    def convert(self, raws: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        self.converted.append(len(raws))  # one call per page, never per record
        out: list[IncidentRecord | InputError] = []
        for raw in raws:
            if raw["id"] == "R4":
                out.append(
                    InputError("priority 'Urgent!' is not in priority_map", field="priority")
                )
                continue
            at = datetime.fromisoformat(raw["at"])
            out.append(IncidentRecord(external_id=raw["id"], key=raw["id"], title="t",
                                      priority="P3", status="new", category=Category.NEW,
                                      created_at=at, updated_at=at))  # fmt: skip
        return out


def driver(tool: Tool, **extra: Any) -> Driver:
    return Driver(
        "sources.t",
        tool.fetch,
        lambda raw: (str(raw["id"]), datetime.fromisoformat(raw["at"])),
        tool.convert,
        is_own=lambda raw: raw["id"] == "R7",
        overlap_s=300,
        **extra,
    )


def test_driver_streams_pages_with_bulk_convert_and_resumes_without_gaps_or_repeats() -> None:
    tool = Tool()
    batches = list(driver(tool).pull(None))
    assert [len(b.records) + len(b.rejected) + b.skipped_own for b in batches] == [3, 3, 3, 1]
    assert [r.key for r in batches[1].rejected] == ["R4"] and batches[2].skipped_own == 1
    assert tool.converted == [3, 3, 2, 1]  # one call per page; the own ticket left out
    tool.rows["R3"] = T0 + timedelta(minutes=9, seconds=30)  # updated inside the overlap
    tool.rows["R10"] = T0 + timedelta(minutes=11)
    again = list(driver(tool).pull(batches[-1].cursor))
    assert [r.key for b in again for r in b.records] == ["R3", "R10"]


def test_driver_backfills_in_windows_from_backfill_from() -> None:
    tool = Tool()
    d = driver(tool, backfill_from=T0, backfill_parts=4, backfill_workers=2,
               clock=lambda: T0 + timedelta(minutes=12))  # fmt: skip
    batches = list(d.pull(None))
    keys = sorted(r.key for b in batches for r in b.records)
    assert keys == sorted(f"R{n}" for n in range(10) if n not in (4, 7))
    final = Cursor.decode(batches[-1].cursor, 300, "x")
    assert final.updated_ms == to_ms(T0 + timedelta(minutes=12))
