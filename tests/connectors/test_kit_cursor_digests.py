"""The kit cursor's optional digests (GLPI's one-second date_mod), and GLPI reading it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from connectors.glpi.pull import Cursor as GlpiCursor
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


def test_glpi_cursor_is_the_kit_cursor_and_still_reads_an_earlier_release() -> None:
    cur = GlpiCursor(datetime(2026, 10, 1, tzinfo=UTC), {5: (1790812790, "ab")})
    text = cur.encode() or ""
    doc = json.loads(text)
    assert doc["seen"] == [["5", 1790812790000]] and doc["d"] == {"5": "ab"}
    again = GlpiCursor.decode(text, "here")
    assert again.watermark == cur.watermark and again.seen == cur.seen
    old = '{"v":1,"w":"2026-10-01T00:00:00+00:00","seen":{"5":[1790812790,"ab"]}}'
    legacy = GlpiCursor.decode(old, "here")
    assert legacy.watermark == cur.watermark and legacy.seen == cur.seen
