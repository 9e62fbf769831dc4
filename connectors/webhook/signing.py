"""Standard Webhooks signatures: HMAC-SHA256 over ``{id}.{timestamp}.{body}``.

A delivery carries three headers:

* ``webhook-id``: stable across retries of one message, the receiver's
  idempotency key (it must not contain ``.``: see :func:`webhook_id_for`);
* ``webhook-timestamp``: integer Unix seconds of this attempt;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries,
  one per secret, so a receiver rotating its secret accepts either.

Secrets are written ``whsec_<base64 of 24–64 random bytes>``; the HMAC key
is the decoded bytes. Verification works on the raw body, compares in
constant time, and refuses a timestamp outside the tolerance either way
(stale or from the future). Messages never quote a secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.errors import ConfigError, InputError, SignatureError
from core.limits import EVENT_ID_MAX

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
MAX_ID_LENGTH = EVENT_ID_MAX
"""The longest webhook-id stored as a response's event id (core.limits)."""
DEFAULT_TOLERANCE_S = 300
"""Deliveries whose timestamp is further than this from now are refused."""

_ID_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_-+~@/=,;")


@dataclass(frozen=True)
class Verified:
    """What a verified delivery's headers said."""

    webhook_id: str
    timestamp: int


def decode_secret(text: str, field: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret.

    Raises:
        ConfigError: naming ``field`` (never the value) when the secret is
            not ``whsec_`` + base64 of 24–64 bytes.
    """
    if not isinstance(text, str) or not text.startswith(SECRET_PREFIX):
        msg = f"{field}: a signing secret is written {SECRET_PREFIX}<base64>"
        raise ConfigError(msg, field=field)
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        msg = f"{field}: the part after {SECRET_PREFIX} is not valid base64"
        raise ConfigError(msg, field=field) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        msg = (
            f"{field}: the secret decodes to {len(key)} bytes; "
            f"use {MIN_SECRET_BYTES}–{MAX_SECRET_BYTES} random bytes"
        )
        raise ConfigError(msg, field=field)
    return key


def generate_secret(size: int = 32) -> str:
    """A fresh ``whsec_`` secret of ``size`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(size)).decode("ascii")


def webhook_id_for(key: str) -> str:
    """The ``webhook-id`` for an idempotency key: the key itself when it is header-safe.

    Any other character (``.``, ``%``, spaces, non-ASCII) is percent-encoded
    as UTF-8 bytes, so the mapping is one-to-one and ids never contain the
    ``.`` that delimits the signed content.
    """
    out: list[str] = []
    for ch in key:
        if ch in _ID_SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for ``webhook_id`` at ``timestamp``."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(
    keys: Sequence[bytes], webhook_id: str, at: datetime, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every key in ``keys``.

    ``at`` must be timezone-aware (its Unix time is what is signed).
    """
    if at.tzinfo is None or at.utcoffset() is None:
        msg = "a webhook timestamp must be timezone-aware"
        raise InputError(msg, field=HEADER_TIMESTAMP)
    timestamp = int(at.timestamp())
    return {
        HEADER_ID: webhook_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(sign(k, webhook_id, timestamp, body) for k in keys),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value.strip()
    msg = f"webhook: missing header {name}"
    if name == HEADER_ID:
        raise InputError(msg, field=name)
    raise SignatureError(msg, field=name)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[bytes],
    now: datetime,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> Verified:
    """Check a delivery's headers and signature against any of ``keys``.

    Raises:
        SignatureError: the timestamp or signature header is missing or
            malformed, the timestamp is outside ``tolerance_s`` ("stale" or
            "from the future"), or no ``v1`` signature matches (forged, or
            signed with another secret); ``field`` names the header.
        InputError: the webhook-id is missing or malformed.
    """
    webhook_id = _header(headers, HEADER_ID)
    raw_ts = _header(headers, HEADER_TIMESTAMP)
    raw_sigs = _header(headers, HEADER_SIGNATURE)
    if not webhook_id or len(webhook_id) > MAX_ID_LENGTH or "." in webhook_id:
        msg = f"webhook: {HEADER_ID} must be 1–{MAX_ID_LENGTH} characters without '.'"
        raise InputError(msg, field=HEADER_ID)
    if not raw_ts.isdigit():
        msg = f"webhook: {HEADER_TIMESTAMP} must be integer Unix seconds"
        raise SignatureError(msg, field=HEADER_TIMESTAMP)
    timestamp = int(raw_ts)
    skew = int(now.timestamp()) - timestamp
    if skew > tolerance_s:
        msg = f"webhook {webhook_id}: stale delivery ({skew} s old, tolerance {tolerance_s} s)"
        raise SignatureError(msg, field=HEADER_TIMESTAMP)
    if -skew > tolerance_s:
        msg = (
            f"webhook {webhook_id}: stale delivery, timestamp {-skew} s in the future "
            f"(tolerance {tolerance_s} s)"
        )
        raise SignatureError(msg, field=HEADER_TIMESTAMP)
    offered = [
        part.split(",", 1)[1].encode("ascii", "replace")
        for part in raw_sigs.split()
        if part.startswith(SIGNATURE_VERSION + ",")
    ]
    if not offered:
        msg = f"webhook {webhook_id}: no {SIGNATURE_VERSION} signature in {HEADER_SIGNATURE}"
        raise SignatureError(msg, field=HEADER_SIGNATURE)
    matched = False
    for key in keys:
        expected = sign(key, webhook_id, timestamp, body).split(",", 1)[1].encode("ascii")
        for candidate in offered:
            # every comparison runs, so timing does not tell which secret matched
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        msg = f"webhook {webhook_id}: signature does not match (forged, or another secret)"
        raise SignatureError(msg, field=HEADER_SIGNATURE)
    return Verified(webhook_id=webhook_id, timestamp=timestamp)
