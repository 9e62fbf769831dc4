"""Stratified survey sampling (SPEC §10, "Survey sampling"; R3).

Decisions beyond the SPEC, applied exactly:

- Per stratum, k = :func:`core.compliance.policy.stratum_sample_size`: round
  half up of ``rate × size`` computed exactly on the decimal ``rate`` prints
  as, so 0.29 × 50 = 14.5 → 15; at least 1 when the stratum is not empty and
  ``rate > 0``; rate 0 picks none.
- Members are ordered by ``sha256(f"{seed}:{id}")`` (hex digest, ties by id)
  and the first k are picked, so the result depends only on the set of
  (id, stratum) pairs, the rate and the seed.
- An id listed twice in the same stratum counts once; in two strata it is an
  ``InputError``. ``rate`` must be within [0, 1].
- Strata are reported sorted; coverage over no strata is 1.0 (nothing to cover).
- ``minimum`` (campaigns) raises each non-empty stratum's k to
  ``min(minimum, size)``; the default 1 is the SPEC's "at least one".
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from core.compliance.policy import round_half_up, stratum_sample_size
from core.errors import InputError

__all__ = [
    "SampleResult",
    "StratumReport",
    "round_half_up",
    "stratified_sample",
    "stratum_picks",
]


@dataclass(frozen=True)
class StratumReport:
    """How many members of one stratum were picked."""

    stratum: tuple[str, ...]
    size: int
    picked: int

    @property
    def achieved_rate(self) -> float:
        """picked / size (0.0 for an empty stratum)."""
        return self.picked / self.size if self.size else 0.0


@dataclass(frozen=True)
class SampleResult:
    """The picked ids and the report per stratum."""

    picked: frozenset[str]
    strata: tuple[StratumReport, ...]

    @property
    def coverage(self) -> float:
        """Share of non-empty strata with at least one member picked (1.0 with no strata)."""
        nonempty = [s for s in self.strata if s.size]
        if not nonempty:
            return 1.0
        return sum(1 for s in nonempty if s.picked) / len(nonempty)


def _order_key(seed: str, member: str) -> tuple[str, str]:
    return hashlib.sha256(f"{seed}:{member}".encode()).hexdigest(), member


def sample_order(seed: str, members: Iterable[str]) -> list[str]:
    """``members`` in the seeded order :func:`stratified_sample` picks a stratum's first k from."""
    return sorted(members, key=lambda m: _order_key(seed, m))


def stratified_sample(
    population: Iterable[tuple[str, tuple[str, ...]]],
    rate: float,
    seed: str,
    *,
    minimum: int = 1,
) -> SampleResult:
    """Pick a reproducible stratified sample.

    Args:
        population: (id, stratum) pairs, e.g. ``("INC-1", ("acme", "email"))``.
        rate: Share to pick in each stratum, 0..1.
        seed: Seed making the choice reproducible.
        minimum: At least this many per non-empty stratum (all of a smaller one),
            when ``rate > 0``.

    Returns:
        The picked ids and the per-stratum report.

    Raises:
        InputError: ``rate`` is outside [0, 1], ``minimum`` is below 1, or an id
            is in two strata.
    """
    stratum_sample_size(rate, 0)  # checks the rate before anything is read
    if minimum < 1:
        msg = f"minimum per stratum must be at least 1, got {minimum!r}"
        raise InputError(msg)
    stratum_of: dict[str, tuple[str, ...]] = {}
    members: dict[tuple[str, ...], set[str]] = {}
    for member, stratum in population:
        stratum = tuple(stratum)
        seen = stratum_of.setdefault(member, stratum)
        if seen != stratum:
            msg = f"{member!r} is in two strata: {seen!r} and {stratum!r}"
            raise InputError(msg)
        members.setdefault(stratum, set()).add(member)
    picked: set[str] = set()
    reports = []
    for stratum in sorted(members):
        ids = members[stratum]
        chosen = stratum_picks(ids, rate, seed, minimum=minimum)
        picked.update(chosen)
        reports.append(StratumReport(stratum=stratum, size=len(ids), picked=len(chosen)))
    return SampleResult(picked=frozenset(picked), strata=tuple(reports))


def stratum_picks(
    members: Collection[str], rate: float, seed: str, *, minimum: int = 1
) -> list[str]:
    """The members :func:`stratified_sample` picks from one stratum of distinct ``members``.

    For a caller that already holds its population grouped by stratum (the
    loop's monthly sample streams it into one array of ids per stratum):
    the same k and the same seeded order, without the pairs and the
    id → stratum map a whole population would cost.
    """
    k = stratum_sample_size(rate, len(members))
    if k:
        k = max(k, min(minimum, len(members)))
    return sorted(members, key=lambda m: _order_key(seed, m))[:k]
