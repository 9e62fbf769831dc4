"""The kit cursor's optional digests (GLPI's one-second date_mod), and GLPI reading it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from connectors.kit.cursor import Cursor


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
