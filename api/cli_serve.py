"""``qloop serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


CONFIG_ENV = "QLOOP_CONFIG"


def app_from_env() -> Any:
    """The uvicorn factory each worker process calls: the app of ``$QLOOP_CONFIG``."""
    from api.app import create_app

    return create_app(Path(os.environ[CONFIG_ENV]))


def cmd_serve(args: argparse.Namespace) -> int:
    """Build the app for the config file and serve it until interrupted.

    With ``--workers`` above 1, the store is migrated once here, then uvicorn
    starts that many processes, each building its app from the config file.
    """
    import uvicorn

    from api.app import create_app
    from api.cli import DEFAULT_CONFIG
    from core.logs import uvicorn_log_config

    path = Path(args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": str(args.log_level).lower(),
        "proxy_headers": True,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "server_header": False,
        "log_config": uvicorn_log_config(str(args.log_level)),  # uvicorn's lines masked too
        "access_log": not getattr(args, "no_access_log", False),
    }
    workers = int(getattr(args, "workers", 1) or 1)
    if workers > 1:
        from api.web.session import SECRET_ENV
        from core.conf import load_config
        from core.runtime import open_runtime

        open_runtime(load_config(path)).close()  # create or migrate the schema once
        os.environ[CONFIG_ENV] = str(path.resolve())
        # one session secret for every process (a cookie made by one is read by all)
        os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(32))
        uvicorn.run("api.cli_serve:app_from_env", factory=True, workers=workers, **common)
        return 0
    uvicorn.run(create_app(path), **common)
    return 0


def worker_count(text: str) -> int:
    """An argparse type: how many server processes, 1 to 64."""
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a number of workers"
        raise argparse.ArgumentTypeError(msg) from None
    if not 1 <= value <= 64:
        msg = f"{value} workers: give 1 to 64"
        raise argparse.ArgumentTypeError(msg)
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a port number"
        raise argparse.ArgumentTypeError(msg) from None
    if not 1 <= value <= 65535:
        msg = f"{value} is not a port number (1 to 65535)"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_commands(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """Add ``qloop serve`` to the CLI's subcommands."""
    text = "serve the HTTP API (uvicorn) until stopped; OpenAPI at /docs"
    p = with_config(sub.add_parser("serve", help=text, description=text))
    p.add_argument(
        "--host",
        default=os.environ.get("QLOOP_HOST", DEFAULT_HOST),
        help=f"address to listen on (default $QLOOP_HOST, else {DEFAULT_HOST}; "
        "0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=os.environ.get("QLOOP_PORT", str(DEFAULT_PORT)),
        help=f"TCP port, 1-65535 (default $QLOOP_PORT, else {DEFAULT_PORT})",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="proxies trusted for X-Forwarded-* (webhook signatures cover the public URL; "
        "default $FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    p.add_argument(
        "--workers",
        type=worker_count,
        default=os.environ.get("QLOOP_WORKERS", "1"),
        help="server processes, 1-64 (default $QLOOP_WORKERS, else 1); more than one "
        "spreads webhook intake and API calls over the CPUs",
    )
    p.add_argument(
        "--no-access-log",
        action="store_true",
        default=os.environ.get("QLOOP_ACCESS_LOG", "").lower() in ("0", "false", "no", "off"),
        help="no uvicorn line per request (default: one, unless $QLOOP_ACCESS_LOG is 0, "
        "false, no or off); each line costs about 0.1 ms of CPU (masked), a sixth of a "
        "webhook delivery; errors are logged either way",
    )
    p.set_defaults(func=cmd_serve)
