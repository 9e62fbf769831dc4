"""read_halving: a batch refused whole for a missing item is read again by halves."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors.kit.halves import read_halving, refusals_allowed
from core.errors import FatalError


class Refused(Exception):
    pass


def _reader(missing: set[str], calls: list[list[str]]) -> Callable[[list[str]], dict[str, str]]:
    def read(part: list[str]) -> dict[str, str]:
        calls.append(part)
        if missing & set(part):
            raise Refused(part)
        return {item: item.upper() for item in part}

    return read


def refused(exc: Exception) -> bool:
    return isinstance(exc, Refused)


@pytest.mark.parametrize("missing", [set(), {"i0"}, {"i37"}, {"i99"}, {"i3", "i70"}])
def test_every_item_but_the_missing_ones_is_read_with_few_requests(missing: set[str]) -> None:
    items = [f"i{n}" for n in range(100)]
    calls: list[list[str]] = []
    found = read_halving(items, _reader(missing, calls), refused)
    assert found == {i: i.upper() for i in items if i not in missing}
    assert len(calls) <= 1 + 2 * 7 * len(missing)  # about 2·log2(100) per missing item
    assert [c for c in calls if len(c) == 1 and c[0] in missing] == [
        [m] for m in sorted(missing, key=items.index)
    ]  # each missing item ends refused on its own


def test_a_batch_refused_for_another_reason_costs_a_bounded_number_of_requests() -> None:
    items = [f"i{n}" for n in range(100)]
    calls: list[list[str]] = []
    found = read_halving(items, _reader(set(items), calls), refused)
    assert found == {} and len(calls) == refusals_allowed(100) == 22


def test_an_error_that_is_no_refusal_goes_up() -> None:
    def read(part: list[str]) -> dict[str, str]:
        raise FatalError("down")

    with pytest.raises(FatalError):
        read_halving(["a", "b"], read, refused)
    assert read_halving([], read, refused) == {}
