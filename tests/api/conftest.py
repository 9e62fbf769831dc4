"""A sandbox month served by the HTTP API, with one token per role and a signed test channel.

``served`` runs a sandbox month through the real loop (``run_once``) on the
``database_url`` backend, then builds the app on that runtime (fake clock)
and a TestClient. The ``hook`` channel is a small webhook receiver of our
own: it accepts JSON deliveries signed with HMAC-SHA256 of the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.exceptions import StarletteDeprecationWarning

from core import registry
from core.connector import ConnectorContext
from core.errors import FatalError, InputError, SignatureError
from core.loop import run_once
from core.records import CollectedBatch, Contact, MessageKind, OutboundMessage, Outcome, SendResult
from core.runtime import Runtime
from tests.utils.loop import Deployment, sandbox_config

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the client works the same
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKENS = {
    "admin": "adm-0123456789abcdef",
    "operator": "ops-0123456789abcdef",
    "qa-read": "qa0-0123456789abcdef",
    "channel": "ivr-0123456789abcdef",
}
"""A token per role; the token named ``<role>-user`` holds it."""
HOOK_SECRET = "hook-signing-secret-0123"
SIGNATURE = "x-hook-signature"


def auth(role: str) -> dict[str, str]:
    """The Authorization header of ``role``'s token."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def sign(body: bytes, secret: str = HOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HookChannel:
    """A channel that only receives signed JSON webhooks (one outcome per delivery)."""

    kinds: frozenset[MessageKind] = frozenset({"callback"})

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ConnectorContext) -> None:
        self.name = name
        self.secret = str(options["secret"])

    def receive(self, headers: Mapping[str, str], body: bytes, url: str) -> Sequence[Outcome]:
        given = headers.get(SIGNATURE, "")
        if not hmac.compare_digest(given, sign(body, self.secret)):
            msg = f"{self.name}: bad signature"
            raise SignatureError(msg, field=SIGNATURE)
        try:
            data = json.loads(body)
            phone = data.get("phone")
            return [
                Outcome(
                    provider_event_id=str(data["id"]),
                    kind="callback_attempt",
                    occurred_at=datetime.fromisoformat(data["at"]),
                    correlation_token=data.get("token"),
                    contact=Contact(phone=phone) if phone else None,
                    reached=bool(data.get("reached", True)),
                    confirmed=data.get("confirmed"),
                    score=data.get("score"),
                    raw={"url": url, **data},
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{self.name}: malformed delivery ({type(exc).__name__})"
            raise InputError(msg) from None

    def can_reach(self, contact: Contact) -> bool:
        return False

    def send(self, message: OutboundMessage) -> SendResult:
        msg = "hook channel cannot send"
        raise FatalError(msg)

    def lookup(self, idempotency_key: str) -> SendResult | None:
        return None

    def collect(self, cursor: str | None) -> Iterator[CollectedBatch]:
        return iter(())

    def close(self) -> None:
        pass


def register_hook_type() -> None:
    registry.register(
        "channel",
        "hooktest",
        HookChannel,
        {"type": "object", "properties": {"secret": {"type": "string"}}, "required": ["secret"]},
    )


def api_config(
    database_url: str,
    tmp_path: Path,
    *,
    incidents: int = 40,
    extra: Mapping[str, Any] | None = None,
    channel_token_channels: Sequence[str] = ("hook",),
) -> Path:
    """The sandbox config plus the ``hook`` channel and an ``api`` section with every role."""
    register_hook_type()
    path = sandbox_config(database_url, tmp_path, incidents=incidents)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["channels"]["hook"] = {"type": "hooktest", "secret": HOOK_SECRET}
    doc["api"] = {
        "tokens": [
            {"name": f"{role}-user", "token": token, "role": role}
            | ({"channels": list(channel_token_channels)} if role == "channel" else {})
            for role, token in TOKENS.items()
        ]
    }
    doc.update(extra or {})
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Served:
    """A deployment after one sandbox month, its runtime, app and client."""

    deployment: Deployment
    rt: Runtime
    client: TestClient

    @property
    def app(self) -> Any:
        return self.client.app


def serve_month(path: Path, *, loop: bool = True) -> Iterator[Served]:
    from api.app import create_app

    dep = Deployment(path)
    rt = dep.open()
    try:
        if loop:
            for _ in range(2):
                assert run_once(rt).errors == []
        app = create_app(rt.config, runtime=rt)
        with TestClient(app) as client:
            yield Served(dep, rt, client)
            app.state.syncs.wait_all(30)
    finally:
        dep.close()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """A sandbox month through the loop, served by the API."""
    yield from serve_month(api_config(database_url, tmp_path))
