"""Hide secrets before a configuration (or a message about it) is shown.

A value is secret when its key looks like one (``api_token``, ``password``,
``client_secret``, ``Authorization``...), when it came from an environment
variable whose name looks like one (``${JIRA_TOKEN}``), or when it is the
password part of a URL (``postgresql://u:pw@h/db``). Masked values become
``"***"``.

In text (errors, log lines) a secret is masked in every form a remote may
echo it in (SPEC §13): literal, URL-encoded (``%2F``/``%2f``, ``+`` for a
space, mixed), JSON-escaped, and base64, standard or URL-safe, of the
secret alone or inside a longer value such as the ``user:secret`` of a
Basic ``Authorization`` header (a base64 run whose decoding contains a
secret is masked whole). :func:`scrub` masks what this process knows:
environment variables whose names look secret and the secrets of the
configurations it loaded (:func:`remember_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

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
    """Scrub known secret values (and URL passwords) out of a message, in any encoding.

    Args:
        text: The message.
        secrets: Secret values to replace by ``***`` wherever they occur,
            literally, URL-encoded, JSON-escaped or in base64 (longest
            first; empty strings are ignored).

    Returns:
        The scrubbed message.
    """
    out = mask_url(text)
    found = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in found:
        out = _pattern(secret).sub(MASK, out)
    if found:
        out = _mask_base64(out, [s.encode("utf-8") for s in found])
    return out


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
"""Text that may be base64 (standard or URL-safe), e.g. after ``Basic ``."""


def _encodings(ch: str) -> list[str]:
    """Regular expressions for the forms ``ch`` may take in echoed text."""
    alts = [re.escape(ch)]
    if not (ch.isascii() and ch.isalnum()) and ch not in "-._~":
        hexes = [
            "%" + "".join(f"[{d.upper()}{d.lower()}]" for d in f"{b:02X}") for b in ch.encode()
        ]
        alts.append("".join(hexes))
        if ch == " ":
            alts.append(r"\+")
        escaped = json.dumps(ch)[1:-1]
        if escaped != ch:
            alts.append(re.escape(escaped))
        if ch == "/":
            alts.append(re.escape("\\/"))
    return alts


@functools.lru_cache(maxsize=256)
def _pattern(secret: str) -> re.Pattern[str]:
    """The secret literally, URL-encoded (any case, ``+`` for space) or JSON-escaped."""
    parts = [_encodings(ch) for ch in secret]
    body = "".join(p[0] if len(p) == 1 else "(?:" + "|".join(p) + ")" for p in parts)
    return re.compile(body)


def _decodings(run: str) -> Iterator[bytes]:
    """``run`` decoded as base64 from each of its first four offsets (a value inside a run)."""
    std = run.rstrip("=").replace("-", "+").replace("_", "/")
    for start in range(4):
        part = std[start:]
        part = part[: len(part) - (len(part) % 4 == 1)]
        if len(part) < 2:
            continue
        try:
            yield base64.b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue


def _mask_base64(text: str, secrets: Sequence[bytes]) -> str:
    def repl(m: re.Match[str]) -> str:
        for decoded in _decodings(m.group()):
            if any(s in decoded for s in secrets):
                return MASK
        return m.group()

    return _BASE64_RUN.sub(repl, text)


ENV_SECRET_NAME = re.compile(
    r"token|password|passwd|secret|api_?key|private_key|credential|auth", re.IGNORECASE
)
"""Environment variable names whose values are secret (wider than :data:`SECRET_NAME`)."""
MIN_AMBIENT_LEN = 6
"""Shorter values are not scrubbed from every message (they would garble ordinary words)."""

_remembered: set[str] = set()
_remembered_lock = threading.Lock()


def env_secret_values(env: Mapping[str, str] | None = None) -> set[str]:
    """Values of environment variables whose names look secret (6+ characters)."""
    env = os.environ if env is None else env
    return {v for k, v in env.items() if ENV_SECRET_NAME.search(k) and len(v) >= MIN_AMBIENT_LEN}


def leaf_secret_values(data: Any, secret_paths: Iterable[Sequence[str | int]] = ()) -> set[str]:
    """The secrets of ``data`` worth masking in any text: scalars whose own key looks
    secret (``api_token``, ``password``; not the names and roles beside a token in
    ``api.tokens``), scalars at ``secret_paths`` (from secret environment
    variables), URL passwords.
    """
    paths = {tuple(p) for p in secret_paths}
    found: set[str] = set()

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif value is not None and not isinstance(value, bool):
            if path in paths or (path and is_secret_name(path[-1])):
                found.add(str(value))
            elif isinstance(value, str):
                found.update(url_passwords(value))

    walk(data, ())
    found.discard("")
    return found


def remember_secrets(values: Iterable[str]) -> None:
    """Add a loaded configuration's secrets to those :func:`scrub` masks in this process."""
    with _remembered_lock:
        _remembered.update(v for v in values if len(v) >= MIN_AMBIENT_LEN)


def known_secrets() -> set[str]:
    """The secrets this process knows: secret-looking environment variables, remembered ones."""
    with _remembered_lock:
        remembered = set(_remembered)
    return env_secret_values() | remembered


@overload
def scrub(text: str) -> str: ...
@overload
def scrub(text: None) -> None: ...
@overload
def scrub(text: str | None) -> str | None: ...
def scrub(text: str | None) -> str | None:
    """``text`` with every known secret masked in every encoding (None stays None)."""
    if not text:
        return text
    return mask_text(text, known_secrets())
