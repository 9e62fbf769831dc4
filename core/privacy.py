"""Masking of customer contact details for exports, API answers and logs.

The contact fields are masked by :func:`mask_phone`, :func:`mask_email` and
:func:`mask_name`. Free text (comments, titles, notes, log lines) is masked
by :func:`mask_pii_text`: every phone number in the forms the mappings see
(international ``+86 138 1234 5678``, ``+8613812345678``, ``0086…``;
national mobiles ``13812345678``, ``138-1234-5678``, ``138 1234 5678``;
landlines with an area code ``021-5555-0101``) and every e-mail address.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")
_DIGIT_RUNS = re.compile(r"(\d+)")
_PHONE_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z+])(?:\+|%2[Bb]|00)[1-9]\d{0,2}(?:[ \-.]?\(?\d+\)?){1,6}(?![0-9A-Za-z])"
    r"|(?<![0-9A-Za-z])1[3-9]\d(?:[ \-]?\d){8}(?![0-9A-Za-z])"
    r"|(?<![0-9A-Za-z])0\d{2,3}[ \-]\d{3,4}[ \-]?\d{4}(?![0-9A-Za-z])"
)
"""International numbers, national mobile numbers (11 digits), landlines with an area code."""
_EMAIL_IN_TEXT = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def mask_phone(phone: str | None) -> str | None:
    """``+86 138 1234 5678`` → ``+86 138 **** 5678``: keep the first 3 and last 4 digits."""
    if not phone:
        return phone
    digits = _DIGITS.findall(phone)
    if len(digits) <= 4:
        return "*" * len(phone)
    national = digits[2:] if phone.strip().startswith("+") and len(digits) > 11 else digits
    keep_head = len(digits) - len(national) + 3
    keep_tail = len(digits) - 4
    if phone.isascii():  # \d and str.isdigit agree: mask the digit runs as slices
        shown = "".join(digits)
        shown = (
            shown[:keep_head] + "*" * (keep_tail - keep_head) + shown[keep_tail:]
            if keep_tail > keep_head
            else shown
        )
        parts = _DIGIT_RUNS.split(phone)  # text, digits, text, …, text
        at = 0
        for i in range(1, len(parts), 2):
            end = at + len(parts[i])
            parts[i] = shown[at:end]
            at = end
        return "".join(parts)
    out, seen = [], 0
    for ch in phone:
        if ch.isdigit():
            out.append(ch if seen < keep_head or seen >= keep_tail else "*")
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


def mask_email(email: str | None) -> str | None:
    """``zhang.wei@example.com`` → ``z***@example.com``."""
    if not email:
        return email
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(name: str | None) -> str | None:
    """``张伟`` → ``张*``; ``Anna Smith`` → ``A*** S***``."""
    if not name:
        return name
    if name.isascii():
        return " ".join(f"{part[:1]}***" for part in name.split())
    return name[:1] + "*" * (len(name) - 1)


def phone_key(phone: str | None) -> str | None:
    """A comparable form of a phone number: digits only, without a +86 country prefix."""
    if not phone:
        return None
    digits = "".join(_DIGITS.findall(phone))
    if phone.strip().startswith("+86") or (digits.startswith("86") and len(digits) == 13):
        digits = digits[2:]
    if digits.startswith("0086"):
        digits = digits[4:]
    return digits or None


def email_key(email: str | None) -> str | None:
    """A comparable form of an e-mail address: trimmed, case-folded."""
    if not email or "@" not in email:
        return None
    return email.strip().casefold()


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = len(_DIGITS.findall(text))
    if not 7 <= digits <= 16:
        return text
    return mask_phone(text) or text


def mask_pii_text(text: str | None) -> str | None:
    """Free text with every phone number and e-mail address in it masked.

    ``call me at +8613912345678, x@example.com`` →
    ``call me at +86139****5678, x***@example.com``.
    """
    if not text:
        return text
    if "@" in text:  # an address has one
        text = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group()) or "***", text)
    return _PHONE_IN_TEXT.sub(_phone, text)
