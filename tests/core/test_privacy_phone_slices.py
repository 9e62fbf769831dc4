"""mask_phone's slice path (ASCII text) masks exactly as the per-character rule."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from core.privacy import mask_phone


def _per_character(phone: str) -> str:
    """The rule digit by digit: keep the first 3 (after a +CC prefix) and the last 4 digits."""
    digits = re.findall(r"\d", phone)
    if len(digits) <= 4:
        return "*" * len(phone)
    national = digits[2:] if phone.strip().startswith("+") and len(digits) > 11 else digits
    keep_head = len(digits) - len(national) + 3
    keep_tail = len(digits) - 4
    out, seen = [], 0
    for ch in phone:
        if ch.isdigit():
            out.append(ch if seen < keep_head or seen >= keep_tail else "*")
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


@given(st.text(alphabet="0123456789 +-().x#", min_size=1, max_size=30))
def test_ascii_phones_mask_as_digit_by_digit(phone: str) -> None:
    assert mask_phone(phone) == _per_character(phone)


def test_examples() -> None:
    assert mask_phone("+86 138 1234 5678") == "+86 138 **** 5678"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("12345") == "12345"
    assert mask_phone("１３８１２３４５６７８") == _per_character("１３８１２３４５６７８")
