"""A remote error that echoes a secret, in any encoding, is masked wherever the error travels.

The corpus ``echoed_secrets.json`` holds error messages with the secret
literally, as the base64 of a Basic header (``user:secret``), as the base64
of the secret alone, and URL-encoded. Two secrets are tried: one from a
secret-looking environment variable, one only in the configuration (the
hook channel's signing secret). A pull failing with each message must leave
neither form in the store (source state, sync run), the log, ``qloop
sources list`` or ``GET /sources`` for qa-read.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import select

from api.cli import main
from core.conf.masking import mask_text, scrub
from core.errors import FatalError
from core.logs import install_masking
from core.loop.pull import pull
from core.store.models import SourceState, SyncRun
from tests.api.conftest import HOOK_SECRET, Served, auth
from tests.safety import corpus

CORPUS = corpus("echoed_secrets")
USER: str = CORPUS["user"]
ENV_SECRET: str = CORPUS["secret"]


def forms(user: str, secret: str) -> dict[str, str]:
    """The encodings a remote may echo ``secret`` in."""
    return {
        "literal": secret,
        "basic": base64.b64encode(f"{user}:{secret}".encode()).decode(),
        "base64": base64.b64encode(secret.encode()).decode(),
        "urlencoded": quote(secret, safe=""),
    }


def messages(user: str, secret: str) -> list[str]:
    f = forms(user, secret)
    return [m.format(**f) for m in CORPUS["messages"]]


def _leaks(text: str, user: str, secret: str) -> list[str]:
    f = forms(user, secret)
    extra = {
        "quote_plus": quote_plus(secret),
        "basic-unpadded": f["basic"].rstrip("="),
        "base64-unpadded": f["base64"].rstrip("="),
    }
    return [name for name, value in {**f, **extra}.items() if value in text]


SECRETS = [(USER, ENV_SECRET), ("hook", HOOK_SECRET)]


def _cli(*argv: str) -> int:
    """``qloop …`` in this process, leaving the test's log capture in place."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(list(argv))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(("user", "secret"), SECRETS)
def test_mask_text_masks_every_encoding(user: str, secret: str) -> None:
    for message in messages(user, secret):
        masked = mask_text(message, [secret])
        assert _leaks(masked, user, secret) == [], (message, masked)
        assert "***" in masked
    urlsafe = base64.urlsafe_b64encode(f"{user}:{secret}".encode()).decode().rstrip("=")
    assert mask_text(f"token={urlsafe}", [secret]) == "token=***"
    assert mask_text(quote_plus(secret).lower().join("<>"), [secret]).startswith("<")
    assert mask_text("a plain message, 2026-10-08T09:30:00+08:00", [secret]) == (
        "a plain message, 2026-10-08T09:30:00+08:00"
    )


@pytest.fixture
def echoing(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("ITSM_API_TOKEN", ENV_SECRET)
    install_masking()
    yield served


@pytest.mark.parametrize(("user", "secret"), SECRETS)
def test_an_echoed_secret_reaches_no_store_log_cli_or_api(
    echoing: Served,
    user: str,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rt = echoing.rt
    source = rt.source("itsm")
    for message in messages(user, secret):

        def failing(cursor: str | None, message: str = message) -> Iterator[object]:
            raise FatalError(f"itsm: 401 from GET /search: {message}")
            yield  # a generator, as pull is

        monkeypatch.setattr(source, "pull", failing)
        caplog.clear()
        with caplog.at_level(logging.WARNING), pytest.raises(FatalError):
            pull(rt, "itsm")
        assert _leaks(caplog.text, user, secret) == [], caplog.text
        assert "pull itsm failed" in caplog.text
        with rt.db.session() as s:
            state = s.get(SourceState, "itsm")
            run = s.scalars(
                select(SyncRun).where(SyncRun.connector == "itsm").order_by(SyncRun.id.desc())
            ).first()
        assert state is not None and run is not None
        for stored in (state.last_error, run.error):
            assert stored and "***" in stored
            assert _leaks(stored, user, secret) == [], stored

        capsys.readouterr()
        assert _cli("sources", "list", "-c", str(echoing.deployment.path)) == 0
        printed = capsys.readouterr().out
        assert "last error: FatalError: itsm: 401" in printed
        assert _leaks(printed, user, secret) == [], printed

        answer = echoing.client.get("/sources", headers=auth("qa-read"))
        assert answer.status_code == 200
        (itsm,) = [src for src in answer.json() if src["name"] == "itsm"]
        assert itsm["last_error"].startswith("FatalError: itsm: 401")
        assert _leaks(answer.text, user, secret) == [], answer.text


@pytest.mark.parametrize(("user", "secret"), SECRETS)
def test_errors_stored_before_the_fix_are_masked_when_served(
    echoing: Served, user: str, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows written by an older qloop (unmasked) are masked again on the way out."""
    raw = " | ".join(messages(user, secret))
    with echoing.rt.db.session() as s:
        state = s.get(SourceState, "itsm")
        assert state is not None
        state.last_error = raw
        for run in s.scalars(select(SyncRun).where(SyncRun.connector == "itsm")):
            run.error = raw
    answer = echoing.client.get("/sources", headers=auth("qa-read"))
    assert answer.status_code == 200 and "***" in answer.text
    assert _leaks(answer.text, user, secret) == []
    capsys.readouterr()
    assert _cli("sources", "list", "-c", str(echoing.deployment.path)) == 0
    assert _leaks(capsys.readouterr().out, user, secret) == []
    assert _leaks(scrub(raw), user, secret) == []


def test_the_loops_console_lines_are_masked(
    echoing: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``qloop run`` prints each step's errors: an echoed secret is masked there too."""
    from api import console

    source = echoing.rt.source("itsm")
    echoed = " ".join(messages(USER, ENV_SECRET))

    def failing(cursor: str | None) -> Iterator[object]:
        raise FatalError(f"itsm: 401 from GET /search: {echoed}")
        yield

    monkeypatch.setattr(source, "pull", failing)
    capsys.readouterr()
    assert console.run_cycles(echoing.rt, cycles=1) == 1
    err = capsys.readouterr().err
    assert "itsm: 401 from GET /search" in err
    assert _leaks(err, USER, ENV_SECRET) == [], err
