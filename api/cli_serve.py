"""``qloop serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def cmd_serve(args: argparse.Namespace) -> int:
    """Build the app for the config file and serve it until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.cli import DEFAULT_CONFIG
    from core.logs import uvicorn_log_config

    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or DEFAULT_CONFIG)
    app = create_app(path)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=str(args.log_level).lower(),
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
        log_config=uvicorn_log_config(str(args.log_level)),  # uvicorn's lines masked too
    )
    return 0


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
    p.set_defaults(func=cmd_serve)
