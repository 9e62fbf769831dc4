"""``qloop evaluate``: a month's indicators recomputed from the stored facts as of an instant.

It reads the stored facts (status changes, callback attempts, survey
answers), evaluates the month's incidents as of ``--as-of`` (default now)
in memory and prints the indicators as JSON; it writes nothing (SPEC §10,
"Evaluation instant"). The same stored facts and ``--as-of`` print the same
bytes whenever it runs. ``qloop report`` writes the monthly report documents.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from core.compliance import whole_second
from core.conf import load_config
from core.errors import InputError
from core.export.as_of import month_indicators_as_of, parse_as_of
from core.runtime import Runtime, open_runtime
from core.timeutil import parse_month

AS_OF_HELP = (
    "evaluate as of this instant, ISO 8601 with a zone (e.g. 2026-11-01T00:00+08:00): "
    "facts after it are not seen (default: now)"
)


def as_of_arg(text: str) -> datetime:
    """An argparse type for ``--as-of``: an instant with a zone."""
    try:
        return parse_as_of(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--as-of: ")) from None


def period_arg(text: str) -> str:
    """An argparse type for ``--period``: YYYY-MM."""
    try:
        parse_month(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def indicators_report(
    rt: Runtime, period: str, as_of: datetime, policy: str | None = None
) -> dict[str, Any]:
    """The month's indicators per policy as of ``as_of``, as a JSON-able document."""
    names = [rt.policy(policy).name] if policy else sorted(rt.policies)
    reports = []
    with rt.db.session() as s:
        for name in names:
            indicators = month_indicators_as_of(rt, s, name, period, as_of)
            reports.append(
                {
                    "policy": name,
                    "version": rt.policy(name).version,
                    "indicators": indicators.as_dict(),
                }
            )
    return {
        "period": period,
        "as_of": as_of.isoformat(),
        "timezone": rt.config.timezone,
        "policies": reports,
    }


def cmd_evaluate(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    rt = open_runtime(load_config(path), existing=True)
    try:
        as_of = args.as_of or whole_second(rt.now())
        doc = indicators_report(rt, args.period, as_of, args.policy)
    finally:
        rt.close()
    print(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True))
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop evaluate`` to the ``qloop`` command."""
    text = (
        "print a month's indicators as JSON, recomputed from the stored facts as of an "
        "instant; read-only"
    )
    p = with_config(sub.add_parser("evaluate", help=text, description=text))
    p.add_argument("--period", required=True, type=period_arg, help="the month, YYYY-MM (required)")
    p.add_argument("--as-of", type=as_of_arg, default=None, help=AS_OF_HELP)
    p.add_argument("--policy", default=None, help="only this policy (default: every policy)")
    p.set_defaults(func=cmd_evaluate)
