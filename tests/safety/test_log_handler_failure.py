"""A log handler that cannot write (stderr closed, a broken pipe) prints nothing of the record."""

from __future__ import annotations

import io
import logging

import pytest

from core.logs import install_masking

SECRET = "s3cr3t-token-that-a-remote-echoed"


def test_a_failing_handler_does_not_dump_the_exception_chain_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    install_masking()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    stream.close()  # like a stderr that went away
    logger = logging.getLogger("qloop.test.handler_failure")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"remote said: token {SECRET} refused")
        except RuntimeError as exc:
            logger.error("pull failed: %s", type(exc).__name__)
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    assert SECRET not in captured.err
    assert "Logging error" not in captured.err
