"""``qloop report``: the monthly quality report as files (HTML, PDF, XLSX or JSON).

It evaluates the month from the stored facts as of ``--as-of`` (default:
now, to the second; printed), renders it in ``--lang`` (default zh-CN for a
CN calendar) and writes ``qloop-report-<period>-<scope>.<format>`` into
``--out`` atomically; the same facts and ``--as-of`` give the same bytes.
The run is audit-logged like an export.
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
from core.export.month import audit_export, cli_actor
from core.report import FORMATS, LANGS, build_report, render_report
from core.runtime import open_runtime


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = args.as_of or whole_second(rt.now())
        print(f"as_of: {as_of.isoformat()}")
        report = build_report(rt, args.period, as_of=as_of, policy=args.policy)
        files = [
            (f"{report.basename}.{fmt}", iter([render_report(report, fmt, args.lang)]))
            for fmt in args.format
        ]
        written = write_files(Path(args.out), files)
        with rt.db.session() as s:
            audit_export(
                s,
                rt,
                actor=cli_actor(),
                period=args.period,
                fmt="report:" + ",".join(args.format),
                policies=[p["policy"] for p in report.data["policies"]],
                masked=True,
                via="cli",
                files=[str(p) for p in written],
                as_of=as_of,
            )
    finally:
        rt.close()
    for p in written:
        print(p)
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop report`` to the ``qloop`` command."""
    text = "write the monthly quality report (HTML, PDF, XLSX or JSON) of a month as of an instant"
    p = with_config(sub.add_parser("report", help=text, description=text))
    p.add_argument("--period", required=True, type=period_arg, help="the month, YYYY-MM (required)")
    p.add_argument("--as-of", type=as_of_arg, default=None, help=AS_OF_HELP)
    p.add_argument(
        "--lang", choices=LANGS, default=None, help="zh-CN or en (default: zh-CN for a CN calendar)"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        action="append",
        default=None,
        help="html, pdf, xlsx or json; repeat for several (default: html and pdf)",
    )
    p.add_argument("--policy", default=None, help="only this policy (default: every policy)")
    p.add_argument("--out", required=True, help="the folder to write into")
    p.set_defaults(func=_with_default_formats)


def _with_default_formats(args: argparse.Namespace) -> int:
    args.format = args.format or ["html", "pdf"]
    return cmd_report(args)
