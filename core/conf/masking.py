"""Hide secrets before a configuration (or a message about it) is shown.

A value is secret when its key looks like one (``api_token``, ``password``,
``client_secret``, ``Authorization``...), when it came from an environment
variable whose name looks like one (``${JIRA_TOKEN}``), or when it is the
password part of a URL (``postgresql://u:pw@h/db``). Masked values become
``"***"``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

MASK = "***"

SECRET_NAME = re.compile(
    r"token|password|passwd|secret|api[_-]?key|private[_-]?key|credential"
    r"|authorization|auth[_-]?token",
    re.IGNORECASE,
)
"""Key or environment variable names whose values are secret."""

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)@")


def is_secret_name(name: object) -> bool:
    """True when a key or environment variable name looks like it holds a secret.

    Args:
        name: A mapping key or variable name (non-strings are never secret).

    Returns:
        Whether values under that name must be masked.
    """
    return isinstance(name, str) and SECRET_NAME.search(name) is not None


def is_secret_path(
    path: Sequence[str | int], secret_paths: Collection[tuple[Any, ...]] = ()
) -> bool:
    """True when ``path`` is, or is under, a secret key or one of ``secret_paths``."""
    path = tuple(path)
    return any(
        path[:n] in secret_paths or (n > 0 and is_secret_name(path[n - 1]))
        for n in range(len(path) + 1)
    )


def secret_paths_of(
    data: Any, env_sources: Mapping[tuple[Any, ...], Iterable[str]] | None = None
) -> set[tuple[str | int, ...]]:
    """The paths of ``data`` holding secrets: under secret keys, or from secret env variables.

    Args:
        data: JSON-like data.
        env_sources: The environment variables each path's value came from.

    Returns:
        The secret paths (the topmost one of a secret subtree).
    """
    found = {
        tuple(p) for p, names in (env_sources or {}).items() if any(map(is_secret_name, names))
    }

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if path and is_secret_name(path[-1]):
            found.add(path)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(data, ())
    return found


def mask_url(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``.

    Args:
        text: Any text, e.g. ``postgresql://u:pw@h/db``.

    Returns:
        The text with ``postgresql://u:***@h/db``.
    """
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


def url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text`` (to scrub them elsewhere)."""
    return [m.group("pw") for m in _URL_PASSWORD.finditer(text)]


def mask(data: Any, secret_paths: Iterable[Sequence[str | int]] = ()) -> Any:
    """A copy of ``data`` with every secret replaced by ``"***"``.

    Args:
        data: JSON-like data (dicts, lists, scalars).
        secret_paths: Paths (tuples of keys and indexes) whose values are secret
            whatever their key, e.g. the values that came from ``${JIRA_TOKEN}``.

    Returns:
        The masked copy; ``data`` is not modified. ``None`` and empty strings
        are kept (there is nothing to hide).
    """
    paths = {tuple(p) for p in secret_paths}
    return _mask(data, (), paths)


def _mask(value: Any, path: tuple[str | int, ...], paths: Collection[tuple[Any, ...]]) -> Any:
    if path in paths or (path and is_secret_name(path[-1])):
        return value if value is None or value == "" else MASK
    if isinstance(value, dict):
        return {k: _mask(v, (*path, k), paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*path, i), paths) for i, v in enumerate(value)]
    if isinstance(value, str):
        return mask_url(value)
    return value


def secret_values(data: Any, secret_paths: Iterable[Sequence[str | int]] = ()) -> set[str]:
    """Every secret value in ``data`` as text (values under secret keys, URL passwords).

    Args:
        data: JSON-like data.
        secret_paths: Extra paths whose values are secret.

    Returns:
        The set of secret strings (scalars under secret keys or paths, as
        ``str``), for :func:`mask_text`.
    """
    paths = {tuple(p) for p in secret_paths}
    found: set[str] = set()
    _collect(data, (), paths, False, found)
    found.discard("")
    return found


def _collect(
    value: Any,
    path: tuple[str | int, ...],
    paths: Collection[tuple[Any, ...]],
    secret: bool,
    found: set[str],
) -> None:
    secret = secret or path in paths or bool(path and is_secret_name(path[-1]))
    if isinstance(value, dict):
        for k, v in value.items():
            _collect(v, (*path, k), paths, secret, found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _collect(v, (*path, i), paths, secret, found)
    elif secret and value is not None and not isinstance(value, bool):
        found.add(str(value))
    elif isinstance(value, str):
        found.update(url_passwords(value))


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Scrub known secret values (and URL passwords) out of a message.

    Args:
        text: The message.
        secrets: Secret values to replace by ``***`` wherever they occur
            (longest first; empty strings are ignored).

    Returns:
        The scrubbed message.
    """
    out = mask_url(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out
