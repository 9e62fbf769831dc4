"""``qloop evidence``: write a period's audit evidence pack, or verify one.

``qloop evidence --from 2026-07 --to 2026-09 [--as-of …] --out pack.zip``
writes the pack (audit-logged) and prints the manifest's SHA-256;
``qloop evidence verify pack.zip`` checks every file against the manifest
and names each changed, missing or extra file (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from api.cli_evaluate import AS_OF_HELP, as_of_arg, period_arg
from core.compliance import whole_second
from core.conf import load_config
from core.errors import InputError
from core.evidence import verify_pack, write_pack
from core.export.month import cli_actor
from core.report import LANGS
from core.runtime import open_runtime

USAGE = (
    "qloop evidence --from YYYY-MM --to YYYY-MM [--as-of INSTANT] [--lang zh-CN|en] "
    "--out FILE.zip\n"
    "       qloop evidence verify FILE.zip"
)


def verify_file(path: str) -> int:
    """Check a pack (evidence or review) against its manifest; 1 when a file changed."""
    result = verify_pack(Path(path))
    for line in result.lines():
        print(line, file=sys.stdout if result.ok else sys.stderr)
    print(f"manifest sha256: {result.manifest_sha256}")
    return 0 if result.ok else 1


def cmd_evidence(args: argparse.Namespace) -> int:
    if args.action:
        if len(args.action) != 2 or args.action[0] != "verify":
            msg = f"unexpected {' '.join(args.action)!r}; usage: {USAGE}"
            raise InputError(msg)
        return verify_file(args.action[1])
    missing = [
        opt
        for opt, value in (("--from", args.start), ("--to", args.end), ("--out", args.out))
        if not value
    ]
    if missing:
        msg = f"{', '.join(missing)} required; usage: {USAGE}"
        raise InputError(msg, field=missing[0])
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = args.as_of or whole_second(rt.now())
        sha = write_pack(
            rt, args.start, args.end, as_of, Path(args.out), actor=cli_actor(), lang=args.lang
        )
    finally:
        rt.close()
    print(f"wrote {args.out} (as of {as_of.isoformat()})")
    print(f"manifest sha256: {sha}")
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop evidence`` to the ``qloop`` command."""
    text = (
        "write a period's audit evidence pack (a zip with a SHA-256 manifest), "
        "or check one: `qloop evidence verify FILE.zip`"
    )
    p = with_config(sub.add_parser("evidence", help=text, description=text, usage=USAGE))
    p.add_argument("action", nargs="*", help="`verify FILE.zip` to check a pack")
    p.add_argument("--from", dest="start", type=period_arg, help="first month, YYYY-MM")
    p.add_argument("--to", dest="end", type=period_arg, help="last month, YYYY-MM (included)")
    p.add_argument("--as-of", type=as_of_arg, default=None, help=AS_OF_HELP)
    p.add_argument(
        "--lang",
        choices=LANGS,
        default=None,
        help="the monthly reports' language (default: zh-CN for a CN calendar, else en)",
    )
    p.add_argument("--out", help="the zip file to write (replaced whole, or left untouched)")
    p.set_defaults(func=cmd_evidence)
