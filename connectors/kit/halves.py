"""Reading a batch a tool refuses whole when one item of it is missing: halve, read again.

Jira's JQL fails (400) when a key names no issue, GLPI's ``getMultipleItems``
(404) when one item is gone. Reading the rest of such a batch one item per
request costs a request per item on every run while the missing item stays
followed; halving the refused batch until the refusal is down to the missing
items costs about ``2·log2(n)`` requests per missing item instead, and the
missing items are left out (the caller reads them alone, so they fail as the
single read does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def refusals_allowed(n: int) -> int:
    """How many refused reads halving ``n`` items may cost: enough to isolate about three
    missing items (each costs one refusal per halving), so that a batch refused for
    another reason (every part refused) wastes a bounded number of requests."""
    return 1 + 3 * max(1, math.ceil(math.log2(max(n, 2))))


def read_halving(
    items: Sequence[str],
    read: Callable[[list[str]], dict[str, T]],
    refused: Callable[[Exception], bool],
) -> dict[str, T]:
    """``read(items)``; when it raises an error ``refused`` accepts, each half read the same
    way. An item refused on its own is left out, and so is every item still unread once
    :func:`refusals_allowed` refusals were spent. Any other error goes up."""
    found: dict[str, T] = {}
    pending = [list(items)] if items else []
    budget = refusals_allowed(len(items))
    while pending:
        part = pending.pop()
        try:
            found.update(read(part))
        except Exception as exc:
            if not refused(exc):
                raise
            budget -= 1
            if budget <= 0:
                break  # refused for another reason than a missing item: the rest alone
            if len(part) > 1:
                half = len(part) // 2
                pending += [part[half:], part[:half]]
    return found
