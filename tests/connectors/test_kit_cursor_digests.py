"""The kit cursor's optional digests (GLPI's one-second date_mod), the driver using them,
and the cursor GLPI stored before the kit."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.kit.cursor import Cursor, to_ms
from connectors.kit.stream import Driver, Raw
from core.errors import InputError
from core.records import Category, IncidentRecord, PulledBatch

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


def test_digests_round_trip_only_for_kept_pairs_and_are_absent_when_unused() -> None:
    mark = Cursor(overlap_ms=60_000)
    mark.add("a", 1_000_000)
    mark.add("b", 1_100_000)  # "a" is now below the overlap window: dropped on encode
    mark.digests = {"a": "d-a", "b": "d-b"}
    doc = json.loads(mark.encode() or "")
    assert doc["seen"] == [["b", 1_100_000]] and doc["d"] == {"b": "d-b"}
    again = Cursor.decode(mark.encode(), 60, "here")
    assert again.digests == {"b": "d-b"} and again.copy().digests == {"b": "d-b"}
    plain = Cursor(overlap_ms=60_000)
    plain.add("x", 5_000)
    assert "d" not in json.loads(plain.encode() or "")  # other sources' cursors unchanged


def test_a_change_within_the_watermark_instant_is_told_by_its_digest() -> None:
    mark = Cursor(overlap_ms=60_000)
    mark.add("a", 1_000_000, "d-a")
    mark.add("b", 1_050_000, "d-b")  # the watermark
    assert mark.is_seen("b", 1_050_000, "d-b") and not mark.is_seen("b", 1_050_000, "d-b2")
    assert mark.is_seen("a", 1_000_000, "d-a2")  # below the watermark: settled
    assert mark.is_seen("b", 1_050_000)  # no digest asked: the pair alone
    mark.add("c", 2_000_000, "d-c")  # a and b leave the window, their digests with them
    assert mark.digests == {"c": "d-c"}


def test_the_cursor_glpi_stored_before_the_kit_is_still_read() -> None:
    old = '{"v":1,"w":"2026-10-01T00:00:00+00:00","seen":{"5":[1790812790,"ab"]}}'
    legacy = Cursor.decode(old, 300, "here")
    assert legacy.updated_ms == int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1000)
    assert legacy.seen == {"5": 1790812790000} and legacy.digests == {"5": "ab"}
    doc = json.loads(legacy.encode() or "")  # written back in the kit's format
    assert doc["seen"] == [["5", 1790812790000]] and doc["d"] == {"5": "ab"}


class CoarseTool:
    """Records whose ``updated`` has one-second granularity; ``text`` changes within it."""

    def __init__(self) -> None:
        self.rows = {f"R{n}": {"id": f"R{n}", "at": T0 + timedelta(seconds=n), "text": "v1"}
                     for n in range(6)}  # fmt: skip
        self.converted: list[str] = []

    def fetch(self, since: datetime | None, until: datetime | None) -> Iterator[list[Raw]]:
        rows = sorted(
            (r for r in self.rows.values()
             if (since is None or r["at"] >= since) and (until is None or r["at"] < until)),
            key=lambda r: r["at"],
        )  # fmt: skip
        for i in range(0, len(rows), 2):
            yield [dict(r) for r in rows[i : i + 2]]

    def convert(self, raws: list[Raw]) -> Sequence[IncidentRecord | InputError]:
        self.converted += [r["id"] for r in raws]
        return [IncidentRecord(external_id=r["id"], key=r["id"], title=r["text"], priority="P3",
                               status="new", category=Category.NEW, created_at=r["at"],
                               updated_at=r["at"]) for r in raws]  # fmt: skip

    def driver(self, **extra: Any) -> Driver:
        return Driver("sources.c", self.fetch, lambda r: (r["id"], r["at"]), self.convert,
                      overlap_s=60, digest=lambda r: str(r["text"]), **extra)  # fmt: skip


def delivered(batches: list[PulledBatch]) -> list[str]:
    return [r.key for b in batches for r in b.records]


def test_driver_with_digest_redelivers_a_change_within_the_watermark_second_only() -> None:
    tool = CoarseTool()
    first = list(tool.driver().pull(None))
    assert delivered(first) == [f"R{n}" for n in range(6)]
    cursor = first[-1].cursor
    assert json.loads(cursor or "")["d"]["R5"] == "v1"
    tool.converted.clear()
    assert delivered(list(tool.driver().pull(cursor))) == []
    assert tool.converted == []  # unchanged at the watermark: not read again
    tool.rows["R5"]["text"] = "v2"  # changed again within the watermark's second
    tool.rows["R4"]["text"] = "v2"  # below the watermark: that second was settled
    again = list(tool.driver().pull(cursor))
    assert delivered(again) == ["R5"] and [r.title for b in again for r in b.records] == ["v2"]
    assert json.loads(again[-1].cursor or "")["d"]["R5"] == "v2"
    assert delivered(list(tool.driver().pull(again[-1].cursor))) == []
    plain = dataclasses.replace(tool.driver(), digest=None)  # without digests: the pair alone
    tool.rows["R5"]["text"] = "v3"
    assert delivered(list(plain.pull(again[-1].cursor))) == []


def test_driver_backfill_ends_at_the_tools_newest_and_keeps_the_last_second() -> None:
    tool = CoarseTool()
    newest = T0 + timedelta(seconds=5)
    behind = T0 - timedelta(days=1)  # qloop's clock behind the tool's: not the end
    backfill = {"backfill_from": T0, "backfill_parts": 3, "backfill_workers": 2,
                "clock": lambda: behind}  # fmt: skip
    until = newest + timedelta(seconds=1)
    batches = list(tool.driver(**backfill, backfill_until=lambda: until).pull(None))
    assert sorted(delivered(batches)) == [f"R{n}" for n in range(6)]
    last = Cursor.decode(batches[-1].cursor, 60, "x")
    assert last.updated_ms == to_ms(newest) and last.digests["R5"] == "v1"
    assert delivered(list(tool.driver().pull(batches[-1].cursor))) == []
    tool.rows["R5"]["text"] = "v2"
    assert delivered(list(tool.driver().pull(batches[-1].cursor))) == ["R5"]
    assert list(tool.driver(**backfill, backfill_until=lambda: None).pull(None)) == []
