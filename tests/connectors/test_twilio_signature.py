"""X-Twilio-Signature: known answers, forged, missing, query strings, JSON bodies, proxies."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from connectors.twilio import signature
from core.errors import InputError

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def expected(token: str, url: str, params: dict[str, str]) -> str:
    """The signature computed here, independently: URL + sorted name/value pairs, HMAC-SHA1."""
    data = url
    for name in sorted(params):
        data += name + params[name]
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


def headers(sig: str | None, ctype: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    out = {"content-type": ctype}
    if sig is not None:
        out["x-twilio-signature"] = sig
    return out


def test_compute_matches_an_independent_known_answer():
    assert signature.compute(TOKEN, URL, PARAMS.items()) == expected(TOKEN, URL, PARAMS)
    # the value Twilio's security guide gives for this very example
    assert expected(TOKEN, URL, PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_verify_accepts_a_genuine_form_delivery_and_returns_its_params():
    sig = expected(TOKEN, URL, PARAMS)
    params = signature.verify(TOKEN, headers(sig), form(PARAMS), URL)
    assert dict(params) == PARAMS


@pytest.mark.parametrize(
    ("sig", "body", "url"),
    [
        (expected("wrong-token", URL, PARAMS), form(PARAMS), URL),
        (expected(TOKEN, URL, PARAMS), form({**PARAMS, "Digits": "9999"}), URL),
        (expected(TOKEN, URL, PARAMS), form(PARAMS), URL.replace("foo=1", "foo=2")),
        (expected(TOKEN, URL, PARAMS)[:-2] + "x=", form(PARAMS), URL),
        ("", form(PARAMS), URL),
    ],
    ids=["wrong-key", "tampered-body", "other-query", "mangled", "empty"],
)
def test_verify_refuses_forged_deliveries(sig, body, url):
    with pytest.raises(InputError, match="X-Twilio-Signature") as info:
        signature.verify(TOKEN, headers(sig), body, url)
    assert TOKEN not in str(info.value)


def test_verify_refuses_a_missing_signature():
    with pytest.raises(InputError, match="missing"):
        signature.verify(TOKEN, headers(None), form(PARAMS), URL)


def test_header_names_are_case_insensitive():
    sig = expected(TOKEN, URL, PARAMS)
    assert signature.verify(TOKEN, {"X-TWILIO-SIGNATURE": sig}, form(PARAMS), URL)


def test_repeated_and_blank_params_are_signed_too():
    body = b"A=2&A=1&B=&C=%E4%B8%AD"
    sig_data = URL + "A1" + "A2" + "B" + "C中"
    sig = base64.b64encode(hmac.new(TOKEN.encode(), sig_data.encode(), hashlib.sha1).digest())
    assert signature.verify(TOKEN, headers(sig.decode()), body, URL)


def test_json_body_is_covered_by_body_sha256():
    body = b'{"execution_sid":"FN1","score":"5"}'
    url = f"https://qloop.example.com/hooks/studio?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = expected(TOKEN, url, {})
    assert signature.verify(TOKEN, headers(sig, "application/json"), body, url) == []
    with pytest.raises(InputError, match="bodySHA256"):
        signature.verify(TOKEN, headers(sig, "application/json"), body + b" ", url)


def test_json_body_without_body_sha256_is_refused():
    body = b'{"execution_sid":"FN1"}'
    url = "https://qloop.example.com/hooks/studio"
    sig = expected(TOKEN, url, {})
    with pytest.raises(InputError, match="bodySHA256"):
        signature.verify(TOKEN, headers(sig, "application/json"), body, url)


def test_public_url_is_tried_for_deliveries_behind_a_proxy():
    public = "https://qloop.example.com/hooks/twilio/phone"
    internal = "http://10.0.0.5:8000/hooks/twilio/phone"
    sig = expected(TOKEN, public, PARAMS)
    with pytest.raises(InputError):
        signature.verify(TOKEN, headers(sig), form(PARAMS), internal)
    assert signature.verify(TOKEN, headers(sig), form(PARAMS), internal, public)


def test_default_port_variants_are_accepted():
    signed_with_port = "https://qloop.example.com:443/hooks/x"
    sig = expected(TOKEN, signed_with_port, PARAMS)
    assert signature.verify(TOKEN, headers(sig), form(PARAMS), "https://qloop.example.com/hooks/x")
    sig = expected(TOKEN, "https://qloop.example.com/hooks/x", PARAMS)
    assert signature.verify(TOKEN, headers(sig), form(PARAMS), signed_with_port)
