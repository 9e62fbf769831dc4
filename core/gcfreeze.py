"""Keep the objects alive before a long computation out of the cyclic GC's collections.

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
