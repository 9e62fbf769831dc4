"""Logging set-up (stdlib) with a filter that scrubs secret values from every record."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(
    r"token|password|passwd|secret|api_?key|private_key|credential|auth", re.IGNORECASE
)


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (6+ characters)."""
    env = os.environ if env is None else env
    return sorted(
        {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 6}, key=len, reverse=True
    )


class ScrubSecrets(logging.Filter):
    """Replace known secret values in log messages by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


def configure(level: str = "WARNING", secrets: Iterable[str] | None = None) -> None:
    """Log to stderr at ``level`` with secrets scrubbed."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets(secret_values() if secrets is None else secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
