"""``qloop review-pack``: write the year's management review pack, or verify one.

``qloop review-pack --year 2026 [--as-of …] [--findings FILE] [--lang …] --out review.zip``
writes the pack (audit-logged) and prints the manifest's SHA-256;
``qloop review-pack verify review.zip`` checks every file against the
manifest and names each changed, missing or extra file (exit 1).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from api.cli_evaluate import AS_OF_HELP, as_of_arg
from api.cli_evidence import verify_file
from core.compliance import whole_second
from core.conf import load_config
from core.errors import InputError
from core.export.month import cli_actor
from core.report import LANGS
from core.review import load_findings, write_review_pack, year_months
from core.runtime import open_runtime

USAGE = (
    "qloop review-pack --year YYYY [--as-of INSTANT] [--findings FILE.yaml|.csv] "
    "[--lang zh-CN|en] --out FILE.zip\n"
    "       qloop review-pack verify FILE.zip"
)


def cmd_review_pack(args: argparse.Namespace) -> int:
    if args.action:
        if len(args.action) != 2 or args.action[0] != "verify":
            msg = f"unexpected {' '.join(args.action)!r}; usage: {USAGE}"
            raise InputError(msg)
        return verify_file(args.action[1])
    missing = [opt for opt, value in (("--year", args.year), ("--out", args.out)) if not value]
    if missing:
        msg = f"{', '.join(missing)} required; usage: {USAGE}"
        raise InputError(msg, field=missing[0])
    # the findings file is checked before the store is opened: a bad file changes nothing
    findings = load_findings(Path(args.findings)) if args.findings else []
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = args.as_of or whole_second(rt.now())
        year_months(args.year, as_of, rt.config.timezone)
        sha = write_review_pack(
            rt,
            args.year,
            as_of,
            Path(args.out),
            actor=cli_actor(),
            findings=findings,
            findings_file=Path(args.findings).name if args.findings else None,
            lang=args.lang,
        )
    finally:
        rt.close()
    print(f"wrote {args.out} (as of {as_of.isoformat()})")
    print(f"manifest sha256: {sha}")
    return 0


def _year(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) == 4):
        msg = f"{text!r} is not a year (YYYY)"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop review-pack`` to the ``qloop`` command."""
    text = (
        "write the year's management review pack (KPI completion, nonconformity closure, "
        "audit findings; a zip with a SHA-256 manifest), or check one: "
        "`qloop review-pack verify FILE.zip`"
    )
    p = with_config(sub.add_parser("review-pack", help=text, description=text, usage=USAGE))
    p.add_argument("action", nargs="*", help="`verify FILE.zip` to check a pack")
    p.add_argument("--year", type=_year, help="the year reviewed, YYYY")
    p.add_argument("--as-of", type=as_of_arg, default=None, help=AS_OF_HELP)
    p.add_argument(
        "--findings",
        help="the internal audits' findings, a .yaml or .csv file "
        "(format: config/schemas/audit-findings.schema.json)",
    )
    p.add_argument(
        "--lang",
        choices=LANGS,
        default=None,
        help="the review's language (default: zh-CN for a CN calendar, else en)",
    )
    p.add_argument("--out", help="the zip file to write (replaced whole, or left untouched)")
    p.set_defaults(func=cmd_review_pack)
