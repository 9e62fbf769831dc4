"""Bearer tokens with roles, and what each role may do.

Tokens come from the ``api.tokens`` section of the YAML (each from the
environment). A request's ``Authorization: Bearer <token>`` is compared with
every configured token in constant time; the matching token's *name* (never
the token) is who the request is from, in the audit log.

=========  =================================================================
role       may
=========  =================================================================
admin      everything (only admin plans, launches and closes survey campaigns)
operator   read, see contact details, trigger syncs, settle the review queue
qa-read    read and download exports; contact details masked
channel    only post outcomes (webhooks, API) for its listed channels
=========  =================================================================

Routes declare what they need with ``Depends(require(Permission.READ))``;
no token or an unknown one is a 401, a role that may not is a 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import ApiError
from api.token_use import TokenUse
from core.conf.model import ApiTokenConfig
from core.errors import ConfigError, Problem


class Permission(StrEnum):
    """Something a request may need to be allowed to do."""

    READ = "read"
    CONTACTS = "contacts"
    """See customers' names, phones and e-mails unmasked."""
    SYNC = "sync"
    REVIEW = "review"
    EXPORT = "export"
    POST_OUTCOMES = "post_outcomes"
    CAMPAIGNS = "campaigns"
    """Plan, launch and close survey campaigns (admin only)."""


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "operator": frozenset(
        {Permission.READ, Permission.CONTACTS, Permission.SYNC, Permission.REVIEW}
    ),
    "qa-read": frozenset({Permission.READ, Permission.EXPORT}),
    "channel": frozenset({Permission.POST_OUTCOMES}),
}
"""What each role may do."""


@dataclass(frozen=True)
class Principal:
    """Who a request is from: the token's name and role."""

    name: str
    role: str
    channels: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def may_post_to(self, channel: str) -> bool:
        """Whether this caller may post outcomes for ``channel``."""
        if not self.can(Permission.POST_OUTCOMES):
            return False
        return self.role != "channel" or channel in self.channels

    @property
    def sees_contacts(self) -> bool:
        return self.can(Permission.CONTACTS)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenStore:
    """The configured tokens, looked up in constant time."""

    def __init__(self, tokens: Iterable[ApiTokenConfig], channels: Iterable[str] = ()) -> None:
        self._tokens = [
            (_digest(t.token), Principal(t.name, t.role, frozenset(t.channels))) for t in tokens
        ]
        problems = _token_problems(list(tokens), set(channels))
        if problems:
            msg = "invalid api.tokens"
            raise ConfigError(msg, problems=problems)

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None; every token is compared."""
        digest = _digest(token)
        found: Principal | None = None
        for known, principal in self._tokens:
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def holder(self, name: str) -> tuple[Principal, bytes] | None:
        """The principal named ``name`` and its token's SHA-256 digest, or None."""
        for known, principal in self._tokens:
            if principal.name == name:
                return principal, known
        return None

    def __len__(self) -> int:
        return len(self._tokens)


def _token_problems(tokens: list[ApiTokenConfig], channels: set[str]) -> list[Problem]:
    out: list[Problem] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, tok in enumerate(tokens):
        where = f"api.tokens[{i}]"
        if tok.role not in ROLE_PERMISSIONS:
            valid = ", ".join(ROLE_PERMISSIONS)
            out.append(Problem("", None, where, f"unknown role {tok.role!r}; valid: {valid}"))
        if tok.name in names:
            out.append(Problem("", None, where, f"token name {tok.name!r} is used twice"))
        names.add(tok.name)
        if _digest(tok.token) in digests:
            out.append(Problem("", None, where, "the same token is given twice"))
        digests.add(_digest(tok.token))
        unknown = sorted(set(tok.channels) - channels)
        if unknown:
            msg = f"unknown channel(s) {', '.join(unknown)}"
            out.append(Problem("", None, f"{where}.channels", msg))
        if tok.role == "channel" and not tok.channels:
            msg = "a token of role 'channel' must list the channels it may post for"
            out.append(Problem("", None, f"{where}.channels", msg))
    return out


bearer = HTTPBearer(
    scheme_name="bearer",
    description="A token from the api.tokens section of the configuration.",
    auto_error=False,
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="qloop"'}


def _store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


def optional_principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    """The caller when a bearer token is given (401 when it is unknown), else None."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    if creds is None or not creds.credentials:
        raise ApiError(401, "the Authorization header must be 'Bearer <token>'", headers=_CHALLENGE)
    principal = _store(request).authenticate(creds.credentials)
    if principal is None:
        raise ApiError(401, "unknown or revoked token", headers=_CHALLENGE)
    uses: TokenUse = request.app.state.token_use
    uses.record(
        request.app.state.rt, principal.name, principal.role, request.method, request.url.path
    )
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency: the caller, who must hold a token allowing ``permission``."""

    def dependency(
        principal: Annotated[Principal | None, Depends(optional_principal)],
    ) -> Principal:
        if principal is None:
            raise ApiError(401, "a bearer token is required", headers=_CHALLENGE)
        if not principal.can(permission):
            msg = f"role {principal.role!r} may not {permission.value.replace('_', ' ')}"
            raise ApiError(403, msg)
        return principal

    return dependency
