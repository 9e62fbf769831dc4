"""Less work for the cyclic GC during long computations: freeze scopes and fewer collections.

:func:`old_objects_frozen` keeps the objects alive before a long computation
out of the cyclic GC's collections; :func:`fewer_collections` spaces the young
collections out while a pull decodes its pages.

A loop step, the evaluate step or a report allocates a few dozen objects
per incident that live for a batch, so the collector's full collections
come every batch or so, and each walks every object of the process (the
modules, SQLAlchemy's mappers and caches, the runtime): a tenth to a
quarter of their CPU time. ``gc.freeze()`` moves the objects alive now to
the permanent generation (not walked); ``gc.unfreeze()`` puts them back into
the oldest generation afterwards, so whatever became garbage among them is
collected later as usual. Objects made inside are collected as before.

The freeze is process-wide, so the scopes nest and are shared by threads:
the first scope to enter freezes, the last to leave unfreezes (an inner
scope never unfreezes what an outer one froze).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """Run the block with the objects alive now frozen out of the cyclic GC."""
    global _depth
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()


YOUNG_GC_THRESHOLD = 20_000
"""Allocations between two young collections while a pull runs (Python's default: 700).

A page of a hundred issues with their changelogs decodes into some 100,000
containers, kept until the page is stored: with the default threshold the
collector runs a hundred times per page and walks the growing heap in its
older generations, a fifth of a pull's CPU. The older generations are then
examined after every young collection (thresholds 1 and 1 instead of 10 and
10), so garbage in cycles is still collected about as often in allocations
as by default: with 10 and 10 the peak RSS of a 50k pull grew by 14 MB."""
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's young threshold to :data:`YOUNG_GC_THRESHOLD` (the older ones
    to 1 and 1) while any pull of this process runs (pulls may overlap on threads); the
    previous thresholds come back after the last one ends. A young threshold of 0
    (collection turned off) or above it is left alone."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            saved = gc.get_threshold()
            _gc_saved = saved if 0 < saved[0] < YOUNG_GC_THRESHOLD else None
            if _gc_saved is not None:
                gc.set_threshold(YOUNG_GC_THRESHOLD, 1, 1)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None
