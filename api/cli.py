"""The ``qloop`` command: validate, run, scheduler, export, outbox, review, demo."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import connectors  # noqa: F401  registers the built-in connector types
from api import console
from core.conf import AppConfig, format_problems, load_config
from core.errors import ConfigError, QloopError
from core.logs import configure
from core.runtime import open_runtime

DEFAULT_CONFIG = "qloop.yaml"
COMMAND_MODULES = ("api.cli_sources", "api.cli_jobs", "api.cli_serve")
"""Modules adding subcommands: each has ``add_commands(sub, with_config)``."""


def _config_path(args: argparse.Namespace) -> Path:
    path = args.config or os.environ.get("QLOOP_CONFIG") or DEFAULT_CONFIG
    return Path(path)


def _load(args: argparse.Namespace) -> AppConfig:
    return load_config(_config_path(args))


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.file))
    print(
        f"{args.file}: valid — {len(cfg.sources)} source(s), {len(cfg.channels)} channel(s), "
        f"{len(cfg.policies)} polic{'y' if len(cfg.policies) == 1 else 'ies'}"
    )
    if args.show:
        import yaml

        print(yaml.safe_dump(cfg.masked(), allow_unicode=True, sort_keys=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from workers import guard, jobs

    rt = open_runtime(_load(args))
    try:  # under every job's lease: a scheduler or worker on the same store is not doubled
        with jobs.leased_all(rt, guard.default_owner("run")):
            return console.run_cycles(rt, cycles=args.cycles, quiet=args.quiet)
    finally:
        rt.close()


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Run the jobs on their schedules: RQ cron leader with ``redis_url``, else in-process."""
    cfg = _load(args)
    if cfg.redis_url:
        from workers.cron import CronLeader
        from workers.queue import connect

        leader = CronLeader(connect(cfg.redis_url), str(_config_path(args)), cfg)
        print(
            f"qloop scheduler (RQ cron, UTC): {len(leader.jobs)} jobs; "
            "one leader at a time, others stand by; Ctrl-C to stop"
        )
        for job in leader.jobs:
            print(f"  {job.name:<28} {job.cron or '':<16} queue {job.queue_name}")
        leader.serve(max_ticks=args.max_ticks)
        return 0

    from workers.scheduler import Scheduler

    rt = open_runtime(cfg)
    try:
        sched = Scheduler(rt, on_run=console.print_job)
        print(f"qloop scheduler: {len(sched.jobs)} jobs; Ctrl-C to stop")
        for scheduled in sorted(sched.jobs, key=lambda j: j.next_at):
            print(
                f"  {scheduled.name:<28} {scheduled.cron:<16} next {scheduled.next_at.isoformat()}"
            )
        sched.serve(max_ticks=args.max_ticks)
    finally:
        rt.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the month's export files whole (temporary file, then rename); audit-logged."""
    from core.export.month import export_month

    rt = open_runtime(_load(args))
    try:
        for path in export_month(
            rt, args.period, args.format, Path(args.out), unmask=args.unmask, policy=args.policy
        ):
            print(path)
    finally:
        rt.close()
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    rt = open_runtime(_load(args))
    try:
        return console.outbox(rt, args.action, args.ids, args.state)
    finally:
        rt.close()


def cmd_review(args: argparse.Namespace) -> int:
    rt = open_runtime(_load(args))
    try:
        return console.review(rt, args.action, args.id, args.incident, args.note)
    finally:
        rt.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from api.demo import run_demo

    return run_demo(Path(args.dir), incidents=args.incidents)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qloop", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("QLOOP_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c", "--config", help=f"config file (default $QLOOP_CONFIG or ./{DEFAULT_CONFIG})"
        )
        return p

    p = sub.add_parser("validate", help="check a config file; list every problem")
    p.add_argument("file")
    p.add_argument("--show", action="store_true", help="print the effective config, secrets masked")
    p.set_defaults(func=cmd_validate)

    p = with_config(sub.add_parser("run", help="run the whole loop once"))
    p.add_argument("--cycles", type=int, default=1, help="run the loop this many times")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("scheduler", help="run the loop's jobs on their schedules"))
    p.add_argument("--max-ticks", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_scheduler)

    p = with_config(sub.add_parser("export", help="write the compliance export of a month"))
    p.add_argument("--period", required=True, help="month, YYYY-MM")
    p.add_argument("--format", choices=("csv", "xlsx", "jsonl"), default="csv")
    p.add_argument("--out", default="exports", help="output folder")
    p.add_argument("--policy", default=None, help="policy name (default: every policy)")
    p.add_argument("--unmask", action="store_true", help="show contact details unmasked")
    p.set_defaults(func=cmd_export)

    p = with_config(sub.add_parser("outbox", help="list the outbox, replay dead letters"))
    p.add_argument("action", choices=("list", "replay"))
    p.add_argument("ids", nargs="*", type=int, help="item ids (replay: default all dead)")
    p.add_argument("--state", default=None, help="list only this state (pending, dead…)")
    p.set_defaults(func=cmd_outbox)

    p = with_config(sub.add_parser("review", help="list and settle the review queue"))
    p.add_argument("action", choices=("list", "match", "dismiss"))
    p.add_argument("id", nargs="?", type=int, help="review item id")
    p.add_argument("--incident", type=int, help="incident id to match to")
    p.add_argument("--note", default=None)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("demo", help="a fresh sandbox month through the whole loop")
    p.add_argument("--dir", default=".demo", help="working folder (recreated)")
    p.add_argument("--incidents", type=int, default=None, help="sandbox incidents (default 400)")
    p.set_defaults(func=cmd_demo)

    for module in COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_commands(sub, with_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(format_problems(exc), file=sys.stderr)
        return 2
    except QloopError as exc:
        print(f"qloop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
