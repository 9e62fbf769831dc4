"""Every error qloop raises on purpose has one root, :class:`QloopError`.

The branches say what the caller should do next::

    QloopError
    ├── ConfigError            fix the YAML; carries every problem found
    ├── InputError             bad request/payload/webhook; nothing was changed (``field``)
    │   └── SignatureError     a delivery's signature or timestamp is refused (HTTP 401)
    ├── ConnectorError         a remote system answered badly (``connector``, ``status``)
    │   ├── RetriableError     try again later (429, 5xx, timeouts); may carry retry_after
    │   └── FatalError         will not succeed by retrying (4xx, refused credentials)
    └── StateError             the store is not in the state the operation needs (HTTP 409)
        └── NotFoundError      the record asked for does not exist (HTTP 404)

The fields a caller acts on are declared on the types (``exc.status``,
``exc.retry_after``, ``exc.field``), never read with ``getattr``.

Errors keep their constructor arguments so they pickle across worker
processes (``__reduce__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class QloopError(Exception):
    """Root of qloop's own errors."""

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        self.message = message
        self.attrs = attrs
        for key, value in attrs.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.attrs))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[QloopError], message: str, attrs: dict[str, Any]) -> QloopError:
    err = cls.__new__(cls)
    QloopError.__init__(err, message, **attrs)
    return err


@dataclass(frozen=True)
class Problem:
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class ConfigError(QloopError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    problems: Sequence[Problem]

    def __init__(self, message: str, problems: Sequence[Problem] = (), **attrs: Any) -> None:
        super().__init__(message, problems=tuple(problems), **attrs)

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  {p}" for p in self.problems)


class InputError(QloopError):
    """Bad input from outside (payload, request, source record); nothing was changed.

    ``field`` names where the input is wrong (a JSON path, a header, a mapped field).
    """

    field: str | None

    def __init__(self, message: str, field: str | None = None, **attrs: Any) -> None:
        super().__init__(message, field=field, **attrs)


class SignatureError(InputError):
    """A signed delivery is refused: forged, signed with another secret, stale or missing.

    The API answers 401; a malformed but authentic delivery is a plain
    :class:`InputError` (400).
    """


class ConnectorError(QloopError):
    """A remote system failed or refused.

    ``connector`` is the source or channel's name; ``status`` the HTTP
    status the remote answered, when it answered one; ``unsent`` is true
    when the request was never sent (a paused host), so it is safe to retry.
    """

    connector: str | None
    status: int | None
    unsent: bool

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        status: int | None = None,
        unsent: bool = False,
        **attrs: Any,
    ) -> None:
        super().__init__(message, connector=connector, status=status, unsent=unsent, **attrs)


class RetriableError(ConnectorError):
    """Worth retrying; ``retry_after`` (seconds) when the remote said how long to wait."""

    retry_after: float | None

    def __init__(self, message: str, retry_after: float | None = None, **attrs: Any) -> None:
        super().__init__(message, retry_after=retry_after, **attrs)


class FatalError(ConnectorError):
    """Retrying cannot help (bad credentials, invalid request, missing permission)."""


class StateError(QloopError):
    """The stored state does not allow the operation (wrong state, unknown id)."""


class NotFoundError(StateError):
    """The record asked for (an id, a name) does not exist; ``what`` names its kind."""
