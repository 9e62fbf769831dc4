"""Phone numbers in E.164, as Twilio wants them (``+8613812345678``).

Chinese numbers are written many ways by ITSM users: ``138 1234 5678``,
``(010) 6552-1234``, ``0086-138…``, ``+86 (0)10 …``. :func:`to_e164`
turns those into E.164 and refuses what cannot be a phone number.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().\u00a0/]")
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_CN_LANDLINE = re.compile(r"0[1-9]\d{8,10}")


def to_e164(raw: str | None, default_country: str = "86") -> str | None:
    """The number in E.164, or None when ``raw`` is not a usable phone number.

    National numbers get ``default_country``; for China (86) a mobile
    (11 digits starting 13–19) or a landline with its trunk ``0`` and area
    code (``010 6552 1234``) is recognised, and a ``(0)`` after ``+86`` is dropped.
    """
    if not raw:
        return None
    text = _SEPARATORS.sub("", raw.strip().replace("(0)", ""))
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        digits = text[1:]
        if not digits.isdigit():
            return None
        if digits.startswith("860"):  # +86 0xx…: trunk prefix written after the country code
            digits = "86" + digits[3:]
        return "+" + digits if 8 <= len(digits) <= 15 and digits[0] != "0" else None
    if not text.isdigit():
        return None
    if default_country == "86":
        if text.startswith("86") and _CN_MOBILE.fullmatch(text[2:]):
            return "+" + text
        if _CN_MOBILE.fullmatch(text):
            return "+86" + text
        if _CN_LANDLINE.fullmatch(text):
            return "+86" + text[1:]
        return None
    national = text.lstrip("0")
    number = default_country + national
    return "+" + number if 8 <= len(number) <= 15 and len(national) >= 6 else None
