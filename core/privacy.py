"""Masking of customer contact details for exports and API answers."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")


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
