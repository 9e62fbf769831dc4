"""What ``qloop demo`` leaves for ``qloop serve``: a config with API tokens, and their values.

The demo's month is served by the API and the QA web page (``/qa``) with
``qloop serve -c <dir>/serve.yaml`` once ``<dir>/serve.env`` is in the
environment. The YAML is the sandbox configuration plus an ``api``
section whose tokens and session secret come from that environment; the
env file (mode 0600) holds fresh random values, one token per role.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import config

ROLES = {"admin": "QLOOP_DEMO_ADMIN_TOKEN", "operator": "QLOOP_DEMO_OPERATOR_TOKEN"}
QA_VAR = "QLOOP_DEMO_QA_TOKEN"
SECRET_VAR = "QLOOP_SESSION_SECRET"


def _api_section() -> str:
    tokens = [*ROLES.items(), ("qa-read", QA_VAR)]
    lines = [
        "",
        "# Added by `qloop demo`: the API's tokens and the QA page's session secret,",
        "# from the environment (serve.env beside this file).",
        "api:",
        f"  session_secret: ${{{SECRET_VAR}}}",
        "  tokens:",
    ]
    lines += [
        f'    - {{name: demo-{role}, token: "${{{var}}}", role: {role}}}' for role, var in tokens
    ]
    return "\n".join(lines) + "\n"


def write_serve_files(workdir: Path) -> tuple[Path, Path]:
    """Write ``serve.yaml`` and ``serve.env`` into ``workdir``; returns their paths."""
    home = workdir.resolve()
    cfg = home / "serve.yaml"
    cfg.write_text(
        config.path("sandbox.yaml").read_text(encoding="utf-8") + _api_section(), encoding="utf-8"
    )
    values = {
        "QLOOP_DATABASE_URL": f"sqlite:///{home / 'qloop.db'}",
        "QLOOP_STATE_DIR": str(home / "state"),
        **{var: secrets.token_urlsafe(24) for var in (*ROLES.values(), QA_VAR)},
        SECRET_VAR: secrets.token_urlsafe(32),
    }
    env = home / "serve.env"
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Secrets of the demo's API (qloop demo writes new ones each run).\n")
        fh.writelines(f"{k}={v}\n" for k, v in values.items())
    return cfg, env


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file written by :func:`write_serve_files`."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out
