"""Stratified survey sampling."""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.compliance import round_half_up, stratified_sample, stratum_sample_size
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


def test_0_29_x_50_is_15_through_every_path() -> None:
    # §10: "exact decimal arithmetic: 0.29 × 50 = 14.5 → 15" — round_half_up gave 14
    assert 0.29 * 50 == 14.499999999999998
    assert round_half_up(0.29 * 50) == 15
    assert round_half_up(Decimal("0.29") * 50) == 15
    assert round_half_up(Fraction(29, 100) * 50) == 15
    assert stratum_sample_size(0.29, 50) == 15
    # the binary noise goes, real differences stay
    assert round_half_up(14.499999) == 14 and round_half_up(Decimal("14.4999")) == 14
    assert [round_half_up(x) for x in (-0.5, -1.5, Fraction(-5, 2))] == [-1, -2, -3]
    assert [round_half_up(r * 10) for r in (0.15, 0.25, 0.35, 0.45)] == [2, 3, 4, 5]


def test_stratum_sample_size() -> None:
    assert [stratum_sample_size(0.3, n) for n in (0, 1, 5, 10)] == [0, 1, 2, 3]
    assert stratum_sample_size(0, 10) == 0 and stratum_sample_size(1, 7) == 7
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(InputError):
            stratum_sample_size(bad, 3)


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
