"""``qloop complaints report``: the complaint report of a period as files (HTML, PDF, XLSX, JSON).

The complaints received in the period (a month ``YYYY-MM`` or a year
``YYYY``, in the configuration's zone), with their times and states, as of
now (printed); written as ``qloop-complaints-<period>.<format>`` into
``--out``. Personal data in free text is masked. Audit-logged like an export.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from core.complaints.report import complaint_document, render_complaints
from core.compliance import whole_second
from core.conf import load_config
from core.export.files import write_files
from core.export.month import audit_export, cli_actor
from core.report import FORMATS, LANGS
from core.report.build import default_lang
from core.runtime import open_runtime


def cmd_complaints(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = whole_second(rt.now())
        print(f"as_of: {as_of.isoformat()}")
        lang = args.lang or default_lang(rt, sorted(rt.policies))
        with rt.db.session() as s:
            doc = complaint_document(s, args.period, rt.config.timezone, as_of=as_of)
        files = [
            (f"{doc.basename}.{fmt}", iter([render_complaints(doc, fmt, lang)]))
            for fmt in args.format or ["html", "pdf"]
        ]
        written = write_files(Path(args.out), files)
        with rt.db.session() as s:
            audit_export(
                s,
                rt,
                actor=cli_actor(),
                period=args.period,
                fmt="complaints:" + ",".join(args.format or ["html", "pdf"]),
                policies=sorted(rt.policies),
                masked=True,
                via="cli",
                files=[str(p) for p in written],
                as_of=as_of,
            )
    finally:
        rt.close()
    counts = doc.report.counts
    print(
        f"{counts['total']} complaint(s); escalated {counts.get('escalated', 0)}; "
        f"open past deadline {counts.get('open_past_deadline', 0)}"
    )
    for p in written:
        print(p)
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop complaints report`` to the ``qloop`` command."""
    text = "complaints (R5): the complaint report of a period"
    p = sub.add_parser("complaints", help=text, description=text)
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="report: write the complaint report"
    )
    help_text = "write the complaint report (HTML, PDF, XLSX or JSON) of a month or year"
    r = with_config(actions.add_parser("report", help=help_text, description=help_text))
    r.add_argument("--period", required=True, help="YYYY-MM or YYYY (required)")
    r.add_argument(
        "--lang", choices=LANGS, default=None, help="zh-CN or en (default: zh-CN for a CN calendar)"
    )
    r.add_argument(
        "--format",
        choices=FORMATS,
        action="append",
        default=None,
        help="html, pdf, xlsx or json; repeat for several (default: html and pdf)",
    )
    r.add_argument("--out", required=True, help="the folder to write into")
    r.set_defaults(func=cmd_complaints)
