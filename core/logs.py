"""Logging set-up (stdlib): no secret and no customer's phone or e-mail in any log line.

Every record of every logger (qloop's, uvicorn's, RQ's, httpx's, the root)
is masked when it is created, through the log record factory: its message,
its arguments, the traceback of its exception (formatted then, masked, and
kept as ``exc_text``, which every standard formatter prints instead of
formatting the exception again) and its stack. Secrets are masked in every
encoding (:func:`core.conf.masking.scrub`), phone numbers and e-mail
addresses inside any text (:func:`core.privacy.mask_pii_text`). The same
masking is installed as a filter on the handlers, so a handler that
receives a record made elsewhere (a test's, a library's) is covered too;
:func:`uvicorn_log_config` gives uvicorn handlers with that filter.
"""

from __future__ import annotations

import logging
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.conf.masking import env_secret_values, known_secrets, mask_text
from core.privacy import mask_pii_text

ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "rq",
    "rq.worker",
    "httpx",
    "httpcore",
)
"""Libraries' loggers sent to the root handler (their own handlers are dropped)."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (6+ characters), longest first."""
    return sorted(env_secret_values(env), key=len, reverse=True)


def mask_log_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` without secrets (any encoding) or phone numbers and e-mail addresses.

    Args:
        text: A message.
        secrets: The secrets to mask; default: those this process knows.
    """
    out = mask_text(text, known_secrets() if secrets is None else secrets)
    return mask_pii_text(out) or out


def _arg(value: Any, secrets: set[str]) -> Any:
    if value is None or isinstance(value, numbers.Number):
        return value  # numbers keep their type for %d and %f
    return mask_log_text(str(value), secrets)


def mask_record(record: logging.LogRecord, extra_secrets: Iterable[str] = ()) -> None:
    """Mask ``record`` in place: message, arguments, traceback and stack (idempotent)."""
    if getattr(record, "_qloop_masked", False):
        return
    secrets = known_secrets().union(extra_secrets)
    record.msg = mask_log_text(str(record.msg), secrets)
    if isinstance(record.args, Mapping):
        record.args = {k: _arg(v, secrets) for k, v in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_arg(v, secrets) for v in record.args)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_log_text(record.exc_text, secrets)
    if record.stack_info:
        record.stack_info = mask_log_text(record.stack_info, secrets)
    record._qloop_masked = True


class ScrubSecrets(logging.Filter):
    """A handler filter masking secrets (these and the known ones) and personal data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record, self.secrets)
        return True


_install_lock = threading.Lock()
_base_factory: Callable[..., logging.LogRecord] | None = None


def _masked_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _base_factory is not None
    record = _base_factory(*args, **kwargs)
    mask_record(record)
    return record


def install_masking() -> None:
    """Mask every log record of this process when it is created (idempotent)."""
    global _base_factory
    with _install_lock:
        # A handler that cannot write (a closed or broken stderr) would otherwise
        # print the failing record's exception chain, unmasked, to stderr: the
        # logging module's documented switch for production turns that off.
        logging.raiseExceptions = False
        if logging.getLogRecordFactory() is _masked_factory:
            return
        _base_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_masked_factory)


def filter_all_handlers(filt: logging.Filter | None = None) -> None:
    """Put a masking filter on every handler of every logger that exists now."""
    filt = filt or ScrubSecrets()
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubSecrets) for f in handler.filters):
                handler.addFilter(filt)


def configure(level: str = "WARNING", secrets: Iterable[str] | None = None) -> None:
    """Log to stderr at ``level``; every logger goes through the masking.

    Args:
        level: Root level name.
        secrets: Extra values to mask (besides the environment's secrets
            and those of the configurations loaded).
    """
    install_masking()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    filt = ScrubSecrets(secrets or ())
    handler.addFilter(filt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    filter_all_handlers(filt)


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config``: its loggers on qloop's stderr handler with the masking filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask": {"()": ScrubSecrets}},
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["mask"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }
