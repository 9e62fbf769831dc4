"""``qloop recompute``: re-evaluate a past month and write what changed and why.

Dry-run by default: prints one line per changed incident and writes the
diff report (``recompute-<period>.json`` and ``.csv``) into ``--out``;
``--apply`` also stores the recomputed records (audit-logged).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from api.cli_evaluate import AS_OF_HELP, as_of_arg, period_arg
from core.compliance import whole_second
from core.conf import load_config
from core.export.files import write_files
from core.export.month import cli_actor
from core.recompute import apply_recompute, diff_csv, diff_json, diff_text, recompute_period
from core.runtime import open_runtime


def cmd_recompute(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = args.as_of or whole_second(rt.now())
        rec = recompute_period(
            rt, args.period, as_of=as_of, policy_version=args.policy_version, policy=args.policy
        )
        print(diff_text(rec))
        if args.out:
            stem = f"recompute-{args.period}"
            for written in write_files(
                Path(args.out),
                [(f"{stem}.json", [diff_json(rec)]), (f"{stem}.csv", [diff_csv(rec)])],
            ):
                print(written)
        if args.apply:
            count = apply_recompute(rt, rec, actor=cli_actor())
            print(f"applied: {count} compliance record(s) stored as of {as_of.isoformat()}")
        else:
            print("dry run: nothing stored (--apply stores the recomputed records)")
    finally:
        rt.close()
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop recompute`` to the ``qloop`` command."""
    text = (
        "re-evaluate a past month under the policy in force then (or a named version) and "
        "report what changed per incident and why; dry run unless --apply"
    )
    p = with_config(sub.add_parser("recompute", help=text, description=text))
    p.add_argument("--period", required=True, type=period_arg, help="the month, YYYY-MM (required)")
    p.add_argument("--as-of", type=as_of_arg, default=None, help=AS_OF_HELP)
    p.add_argument(
        "--policy-version",
        default=None,
        help="judge under this policy version (one the configuration defines; "
        "default: each record's stored version when still defined, else the current rules)",
    )
    p.add_argument("--policy", default=None, help="only this policy (default: every policy)")
    p.add_argument("--out", default=None, help="folder for recompute-<period>.json and .csv")
    p.add_argument(
        "--apply",
        action="store_true",
        help="store the recomputed records (audited); default: dry run",
    )
    p.set_defaults(func=cmd_recompute)
