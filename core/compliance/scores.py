"""Satisfaction scores: normalisation to 1–5 and exact decimal rounding.

Decisions: inputs are read as the decimals they print as (``Decimal(str(x))``),
arithmetic is exact (fractions), and results are rounded to 4 decimals with
ties rounded half up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from core.errors import InputError


def exact(value: float) -> Fraction:
    """The decimal a finite number prints as, as an exact fraction.

    Args:
        value: A finite int or float.

    Returns:
        ``Fraction(Decimal(str(value)))``.

    Raises:
        InputError: ``value`` is not finite.
    """
    if not math.isfinite(value):
        msg = f"not a finite number: {value!r}"
        raise InputError(msg)
    return Fraction(Decimal(str(value)))


def round4(value: Fraction) -> float:
    """Round an exact value to 4 decimals, ties away from zero (half up for scores).

    Args:
        value: An exact fraction.

    Returns:
        The rounded value as a float.
    """
    scaled = abs(value) * 10_000
    units = scaled.numerator // scaled.denominator
    if scaled - units >= Fraction(1, 2):
        units += 1
    return float(Decimal(-units if value < 0 else units).scaleb(-4))


def normalise_score(score: float, scale_min: float, scale_max: float) -> float:
    """Map a score linearly from [scale_min, scale_max] to [1, 5].

    Args:
        score: The score on the channel's scale.
        scale_min: Lowest score of the scale.
        scale_max: Highest score of the scale.

    Returns:
        ``1 + (score - min) * 4 / (max - min)``, rounded to 4 decimals (ties half up).

    Raises:
        InputError: The scale is empty or reversed, or the score is outside it.
    """
    s, lo, hi = exact(score), exact(scale_min), exact(scale_max)
    if lo >= hi:
        msg = f"score scale must have min < max, got ({scale_min}, {scale_max})"
        raise InputError(msg)
    if not lo <= s <= hi:
        msg = f"score {score} is outside the scale ({scale_min}, {scale_max})"
        raise InputError(msg)
    return round4(1 + (s - lo) * 4 / (hi - lo))


def mean_score(scores: Iterable[float]) -> float | None:
    """Exact mean of scores, rounded to 4 decimals (ties half up); None when empty.

    Args:
        scores: Normalised scores.

    Returns:
        The mean, or None.
    """
    values = [exact(s) for s in scores]
    if not values:
        return None
    return round4(sum(values, Fraction(0)) / len(values))
