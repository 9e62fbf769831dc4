"""``X-Twilio-Signature``: how Twilio signs the requests it makes to qloop.

The signature is the base64 HMAC-SHA1, keyed with the account's auth
token, of the full URL Twilio called followed, for a form-encoded POST, by
every parameter name and value, sorted by name (and by value for a
repeated name). For a JSON body Twilio signs the URL alone and adds
``bodySHA256`` (hex SHA-256 of the body) to its query string, so the body
is covered through the URL.

Twilio computed the signature on the URL it was configured with; behind a
proxy qloop sees another one, so :func:`verify` tries the configured public
URL as well as the one received, with and without the scheme's default
port (Twilio's own validators do the same).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from core.errors import InputError, SignatureError

HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``."""
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, matched case-insensitively."""
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def is_json(headers: Mapping[str, str], url: str) -> bool:
    """Whether the body is JSON (signed through ``bodySHA256``) rather than form parameters."""
    if "bodySHA256" in dict(parse_qsl(urlsplit(url).query)):
        return True
    ctype = (header(headers, "Content-Type") or "").lower()
    return "json" in ctype


def form_params(body: bytes) -> list[tuple[str, str]]:
    """The form parameters of a urlencoded body (blank values kept: they are signed too)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = "Twilio callback: the form body is not UTF-8"
        raise InputError(msg, field="body") from exc
    return parse_qsl(text, keep_blank_values=True)


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    out = [url]
    if parts.port is not None and parts.port == default:
        out.append(urlunsplit(parts._replace(netloc=prefix + host)))
    elif parts.port is None and default is not None:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return out


def candidate_urls(url: str, public_url: str | None) -> list[str]:
    """URLs Twilio may have signed: the public one (with the received query) and ``url``."""
    urls: list[str] = []
    if public_url:
        query = urlsplit(url).query
        public = public_url
        if query and not urlsplit(public_url).query:
            public = f"{public_url}?{query}"
        urls.extend(_port_variants(public))
    urls.extend(u for u in _port_variants(url) if u not in urls)
    return urls


def verify(
    auth_token: str,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    public_url: str | None = None,
) -> Sequence[tuple[str, str]]:
    """Check a delivery's signature; returns its form parameters (empty for JSON).

    Raises:
        SignatureError: the signature is missing or does not match, or a JSON
            body does not match its ``bodySHA256`` (an :class:`InputError`). The message never
            contains the token or the expected signature.
    """
    given = header(headers, HEADER)
    if not given:
        msg = f"Twilio callback: the {HEADER} header is missing"
        raise SignatureError(msg, field=HEADER)
    json_body = is_json(headers, url)
    params: list[tuple[str, str]] = [] if json_body else form_params(body)
    matched = any(
        hmac.compare_digest(compute(auth_token, u, params).encode(), given.strip().encode())
        for u in candidate_urls(url, public_url)
    )
    if not matched:
        msg = f"Twilio callback: {HEADER} does not match (forged, or signed for another URL)"
        raise SignatureError(msg, field=HEADER)
    if json_body:
        declared = dict(parse_qsl(urlsplit(url).query)).get("bodySHA256", "")
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(declared.lower().encode(), actual.encode()):
            msg = "Twilio callback: the JSON body does not match its bodySHA256"
            raise SignatureError(msg, field="bodySHA256")
    return params
