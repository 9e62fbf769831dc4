"""Sessions of the QA web page: a signed cookie that never holds the token.

Signing in with a bearer token gives a cookie whose value is a JSON payload
and its HMAC-SHA256 under the session secret (``api.session_secret``, else
a random secret per process). The payload names the token's holder, carries
an HMAC of the token's digest (so a changed or revoked token ends every
session made with it, and the cookie reveals nothing usable), a CSRF value
for the page's POST forms, a session id and an expiry. The cookie is
HttpOnly, SameSite=Strict, and Secure when the page is served over https.
Signing out records the session id as ended (in the store, when the codec
has one: every server process then refuses the cookie) and clears it.

Without ``api.session_secret``, ``qloop serve --workers N`` draws one secret
for all its processes (:data:`SECRET_ENV`); a lone process draws its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from api.auth import Principal, TokenStore

COOKIE = "qloop_qa"
PRE_COOKIE = "qloop_qa_pre"
"""Before sign-in: holds the CSRF value the sign-in form must echo."""
LIFETIME = timedelta(hours=8)
WEB_ROLES = frozenset({"admin", "operator", "qa-read"})
"""Roles that may sign in to the page (not ``channel``)."""
SECRET_ENV = "QLOOP_WEB_SESSION_SECRET"
"""Set by ``qloop serve --workers N`` for its processes when no ``api.session_secret`` is given."""


class EndedSessions(Protocol):
    """Where signed-out session ids are kept, so that every process refuses them."""

    def end(self, sid: str, expires: datetime, now: datetime) -> None: ...

    def ended(self, sid: str) -> bool: ...


@dataclass(frozen=True)
class WebSession:
    """A signed-in visitor: who, the CSRF value of their forms, until when."""

    principal: Principal
    sid: str
    csrf: str
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Makes and reads session cookies; remembers the ids signed out in this process."""

    def __init__(
        self, secret: str | None, tokens: TokenStore, ended: EndedSessions | None = None
    ) -> None:
        chosen = secret or os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32)
        self._key = hashlib.sha256(chosen.encode("utf-8")).digest()
        self._tokens = tokens
        self._store = ended
        self._ended: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def _token_mac(self, token_digest: bytes) -> str:
        return _b64(hmac.new(self._key, b"token:" + token_digest, hashlib.sha256).digest())

    def sign_in(self, token: str, now: datetime) -> tuple[WebSession, str] | None:
        """A new session and its cookie value for ``token``; None when it may not sign in."""
        principal = self._tokens.authenticate(token)
        if principal is None or principal.role not in WEB_ROLES:
            return None
        session = WebSession(
            principal,
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            expires=now + LIFETIME,
        )
        body = {
            "sub": principal.name,
            "tok": self._token_mac(hashlib.sha256(token.encode("utf-8")).digest()),
            "sid": session.sid,
            "csrf": session.csrf,
            "exp": int(session.expires.timestamp()),
        }
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return session, f"{_b64(payload)}.{self._sign(payload)}"

    def read(self, value: str | None, now: datetime) -> WebSession | None:
        """The session a cookie value stands for; None when forged, expired or ended."""
        if not value or value.count(".") != 1:
            return None
        encoded, signature = value.split(".")
        try:
            payload = _unb64(encoded)
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(payload)
            name, mac, sid, csrf = (str(body[k]) for k in ("sub", "tok", "sid", "csrf"))
            expires = datetime.fromtimestamp(int(body["exp"]), now.tzinfo)
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= now:
            return None
        with self._lock:
            if sid in self._ended:
                return None
        if self._store is not None and self._store.ended(sid):
            return None
        found = self._tokens.holder(name)
        if found is None:
            return None
        principal, digest = found
        if principal.role not in WEB_ROLES or not hmac.compare_digest(mac, self._token_mac(digest)):
            return None
        return WebSession(principal, sid=sid, csrf=csrf, expires=expires)

    def sign_out(self, session: WebSession, now: datetime) -> None:
        """End ``session``: its cookie is refused from now on by every process sharing the store."""
        if self._store is not None:
            self._store.end(session.sid, session.expires, now)
        with self._lock:
            self._ended = {k: v for k, v in self._ended.items() if v > now}
            self._ended[session.sid] = session.expires


def same_value(given: str | None, expected: str) -> bool:
    """A CSRF check in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
