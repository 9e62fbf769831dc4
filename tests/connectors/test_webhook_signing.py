"""Standard Webhooks signing: known answers, rotation, tolerance, malformed headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.webhook.signing import (
    decode_secret,
    generate_secret,
    sign,
    signed_headers,
    verify,
    webhook_id_for,
)
from core.errors import ConfigError, InputError

KEY = bytes(range(32))
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
BODY = b'{"type":"outcome.reported","n":1}'
TS = 1741083161
NOW = datetime.fromtimestamp(TS, UTC)


def expected(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    """The signature computed independently of the module under test."""
    mac = hmac.new(key, msg_id.encode() + b"." + str(ts).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_sign_known_answer() -> None:
    """Checked against `openssl dgst -sha256 -mac HMAC` on the same bytes."""
    assert decode_secret(SECRET, "s") == KEY
    assert sign(KEY, "msg_2Lm9xQ", TS, BODY) == "v1,DQ8JkddRasCWbPxFTCtD+kOjdb8E7W9L55TYf2POb3g="


@pytest.mark.parametrize("body", [b"", b"{}", '{"c":"回访"}'.encode(), bytes(range(256))])
def test_sign_matches_an_independent_hmac(body: bytes) -> None:
    assert sign(KEY, "callback:itsm:42", TS, body) == expected(KEY, "callback:itsm:42", TS, body)


def test_signed_headers_use_unix_seconds_of_an_aware_instant_in_any_zone() -> None:
    shanghai = NOW.astimezone(timezone(timedelta(hours=8)))
    headers = signed_headers([KEY, b"k" * 24], "msg_1", shanghai, BODY)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(TS)
    first, second = headers["webhook-signature"].split(" ")
    assert first == expected(KEY, "msg_1", TS, BODY)
    assert second == expected(b"k" * 24, "msg_1", TS, BODY)
    with pytest.raises(InputError):
        signed_headers([KEY], "msg_1", datetime(2026, 1, 1), BODY)


def _headers(msg_id: str = "msg_1", ts: int = TS, sig: str | None = None) -> dict[str, str]:
    return {
        "Webhook-Id": msg_id,
        "WEBHOOK-TIMESTAMP": str(ts),
        "webhook-signature": sig if sig is not None else expected(KEY, msg_id, ts, BODY),
    }


OLD_KEY = b"o" * 32


@pytest.mark.parametrize(
    ("headers", "body", "keys", "now", "expect"),
    [
        (_headers(), BODY, [KEY], NOW, nullcontext()),
        (_headers(), BODY + b" ", [KEY], NOW, pytest.raises(InputError, match="does not match")),
        (_headers(), BODY, [OLD_KEY], NOW, pytest.raises(InputError, match="does not match")),
        (
            _headers(sig=f"v1,bm90IHRoaXM= {expected(OLD_KEY, 'msg_1', TS, BODY)}"),
            BODY,
            [KEY, OLD_KEY],
            NOW,
            nullcontext(),
        ),
        (
            _headers(sig="v1a,bm90IHRoaXM= " + expected(KEY, "msg_1", TS, BODY)),
            BODY,
            [KEY],
            NOW,
            nullcontext(),
        ),
        (_headers(), BODY, [KEY], NOW + timedelta(seconds=300), nullcontext()),
        (
            _headers(),
            BODY,
            [KEY],
            NOW + timedelta(seconds=301),
            pytest.raises(InputError, match="stale"),
        ),
        (
            _headers(),
            BODY,
            [KEY],
            NOW - timedelta(seconds=301),
            pytest.raises(InputError, match=r"stale.*future"),
        ),
        (
            _headers(sig="v1a,AAAA"),
            BODY,
            [KEY],
            NOW,
            pytest.raises(InputError, match="no v1 signature"),
        ),
        (
            {"webhook-id": "m", "webhook-timestamp": str(TS)},
            BODY,
            [KEY],
            NOW,
            pytest.raises(InputError, match="missing header webhook-signature"),
        ),
        (
            {**_headers(), "WEBHOOK-TIMESTAMP": "2025-03-04T10:12:41Z"},
            BODY,
            [KEY],
            NOW,
            pytest.raises(InputError, match="integer Unix seconds"),
        ),
        (
            _headers(msg_id="msg.1"),
            BODY,
            [KEY],
            NOW,
            pytest.raises(InputError, match=r"without '\.'"),
        ),
    ],
    ids=[
        "valid",
        "body-changed",
        "wrong-secret",
        "rotated-secret",
        "unknown-scheme-skipped",
        "edge-of-tolerance",
        "stale",
        "future",
        "no-v1",
        "missing-header",
        "timestamp-not-integer",
        "dot-in-id",
    ],
)
def test_verify(
    headers: dict[str, str],
    body: bytes,
    keys: list[bytes],
    now: datetime,
    expect: AbstractContextManager[object],
) -> None:
    with expect:
        verified = verify(headers, body, keys, now, tolerance_s=300)
        assert (verified.webhook_id, verified.timestamp) == (headers["Webhook-Id"], TS)


def test_verify_errors_never_quote_the_secret_or_signature() -> None:
    sig = expected(KEY, "msg_1", TS, BODY)
    with pytest.raises(InputError) as info:
        verify(_headers(), BODY + b"x", [KEY], NOW)
    assert sig.split(",", 1)[1] not in str(info.value)
    assert SECRET.removeprefix("whsec_") not in str(info.value)
    assert info.value.field == "webhook-signature"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("secret", "match"),
    [
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "whsec_<base64>"),
        ("whsec_not base64!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_decode_secret_refuses_bad_secrets_without_showing_them(secret: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        decode_secret(secret, "channels.cc.signing_secret")
    assert "channels.cc.signing_secret" in str(info.value)
    assert secret not in str(info.value)


def test_generate_secret_round_trips() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret, "s")) == 32


@pytest.mark.parametrize(
    ("key", "webhook_id"),
    [
        (
            "callback:itsm:SUP-1:2026-10-05T03:04:05+00:00",
            "callback:itsm:SUP-1:2026-10-05T03:04:05+00:00",
        ),
        ("survey:itsm:a.b", "survey:itsm:a%2Eb"),
        ("survey:itsm:100%", "survey:itsm:100%25"),
        ("callback:jsm:工单 1", "callback:jsm:%E5%B7%A5%E5%8D%95%201"),
    ],
)
def test_webhook_id_is_the_key_made_header_safe_one_to_one(key: str, webhook_id: str) -> None:
    assert webhook_id_for(key) == webhook_id
    assert "." not in webhook_id and webhook_id.isascii()
