"""The GC freeze scopes nest: only the outermost one unfreezes."""

from __future__ import annotations

import gc
import threading

import pytest

from core.gcfreeze import old_objects_frozen


def test_an_inner_scope_leaves_the_outer_freeze_in_place() -> None:
    before = gc.get_freeze_count()
    with old_objects_frozen():
        outer = gc.get_freeze_count()
        assert outer > before
        with old_objects_frozen():
            pass
        assert gc.get_freeze_count() == outer  # the inner exit did not unfreeze
    assert gc.get_freeze_count() == before


def test_a_failure_inside_unfreezes() -> None:
    before = gc.get_freeze_count()
    with pytest.raises(RuntimeError), old_objects_frozen():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == before


def test_the_last_thread_to_leave_unfreezes() -> None:
    before = gc.get_freeze_count()
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with old_objects_frozen():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(5)
    with old_objects_frozen():
        pass
    assert gc.get_freeze_count() > before  # the other thread is still inside
    release.set()
    t.join(5)
    assert gc.get_freeze_count() == before
