"""Stratified survey sampling."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.compliance import round_half_up, stratified_sample
from core.errors import InputError

POP = (
    [(f"A{i}", ("acme", "email")) for i in range(5)]
    + [("B0", ("acme", "vpn"))]
    + [(f"C{i}", ("globex", "email")) for i in range(10)]
)


def test_round_half_up() -> None:
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 1.4999, 2.0, 0.0)] == [1, 2, 3, 1, 2, 0]
    assert round_half_up(0.3 * 5) == 2
    with pytest.raises(InputError):
        round_half_up(float("inf"))


def test_counts_per_stratum() -> None:
    result = stratified_sample(POP, 0.3, "2026")
    report = {s.stratum: (s.size, s.picked) for s in result.strata}
    assert report == {
        ("acme", "email"): (5, 2),  # 0.3 x 5 = 1.5 -> 2
        ("acme", "vpn"): (1, 1),  # 0.3 x 1 = 0.3 -> 0, at least 1
        ("globex", "email"): (10, 3),  # 3.0
    }
    assert [s.stratum for s in result.strata] == sorted(report)
    assert len(result.picked) == 6
    assert result.coverage == 1.0
    assert result.strata[0].achieved_rate == 0.4


def test_exact_decimal_rate() -> None:
    # 0.29 x 50 is 14.499999999999998 in floats but 14.5 exactly -> 15
    pop = [(str(i), ("s",)) for i in range(50)]
    assert stratified_sample(pop, 0.29, "x").strata[0].picked == 15


def test_picks_the_lowest_hashes() -> None:
    result = stratified_sample(POP, 0.3, "seed-1")
    acme = sorted(
        (m for m, s in POP if s == ("acme", "email")),
        key=lambda m: hashlib.sha256(f"seed-1:{m}".encode()).hexdigest(),
    )
    assert {m for m in result.picked if m.startswith("A")} == set(acme[:2])


def test_rate_zero_and_one() -> None:
    none = stratified_sample(POP, 0, "s")
    assert none.picked == frozenset() and none.coverage == 0.0
    every = stratified_sample(POP, 1, "s")
    assert every.picked == {m for m, _ in POP}


def test_invalid_input() -> None:
    with pytest.raises(InputError):
        stratified_sample(POP, 1.5, "s")
    with pytest.raises(InputError):
        stratified_sample([("X", ("a",)), ("X", ("b",))], 0.5, "s")
    # the same member listed twice in one stratum counts once
    assert stratified_sample([("X", ("a",)), ("X", ("a",))], 0.5, "s").strata[0].size == 1


def test_empty_population() -> None:
    result = stratified_sample([], 0.3, "s")
    assert result.picked == frozenset() and result.strata == () and result.coverage == 1.0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.75]), st.text(max_size=8))
def test_reproducible_and_order_independent(shuffle_seed: int, rate: float, seed: str) -> None:
    shuffled = list(POP)
    random.Random(shuffle_seed).shuffle(shuffled)
    assert stratified_sample(shuffled, rate, seed) == stratified_sample(POP, rate, seed)
