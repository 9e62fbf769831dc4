"""qloop: set up, check and run the service-quality loop, and look at its results.

Exit status: 0 done; 1 the operation failed (a remote or stored state
refused it); 2 bad usage or configuration (the message names the option,
or the file, line and key). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

import config
import connectors  # noqa: F401  registers the built-in connector types
from api import console
from api.cli_evaluate import as_of_arg
from core.conf import AppConfig, format_problems, load_config, mask_url
from core.errors import ConfigError, InputError, QloopError
from core.logs import configure
from core.runtime import open_runtime

DEFAULT_CONFIG = "qloop.yaml"
COMMAND_MODULES = (
    "api.cli_sources",
    "api.cli_jobs",
    "api.cli_serve",
    "api.cli_schema",
    "api.cli_evaluate",
    "api.cli_report",
    "api.cli_evidence",
    "api.cli_recompute",
    "api.cli_campaign",
    "api.cli_review",
    "api.cli_complaints",
)
"""Modules adding subcommands: each has ``add_commands(sub, with_config)``."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LONG_RUNNING = frozenset({"serve", "worker", "scheduler"})
"""Commands that log at INFO by default (their start-up lines); the others at WARNING."""
INIT_TEMPLATE = "example-embedded.yaml"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


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


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented, runnable embedded config (SQLite + sandbox) to start from."""
    path = Path(args.path)
    if path.is_dir():
        path = path / DEFAULT_CONFIG
    if path.exists() and not args.force:
        msg = f"{path} exists; give another path, or --force to overwrite it"
        raise InputError(msg)
    header = (
        f"# Written by `qloop init` from qloop's {INIT_TEMPLATE}. It runs as it is:\n"
        f"#   qloop validate {path}    then    qloop run -c {path}\n"
        "# then replace the sandbox connectors with your tools (docs/connectors.md).\n#\n"
    )
    text = header + config.path(INIT_TEMPLATE).read_text("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}: check it with `qloop validate {path}`, run it with `qloop run -c {path}`")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the month's export files whole (temporary file, then rename); audit-logged."""
    from core.export.month import export_month

    rt = open_runtime(_load(args), existing=True)
    try:
        for path in export_month(
            rt,
            args.period,
            args.format,
            Path(args.out),
            unmask=args.unmask,
            policy=args.policy,
            as_of=args.as_of,
        ):
            print(path)
    finally:
        rt.close()
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    if args.action == "list" and args.ids:
        msg = "outbox list takes no ids (use --state to filter)"
        raise InputError(msg)
    rt = open_runtime(_load(args), existing=args.action == "list")
    try:
        return console.outbox(rt, args.action, args.ids, args.state)
    finally:
        rt.close()


def cmd_review(args: argparse.Namespace) -> int:
    rt = open_runtime(_load(args), existing=args.action == "list")
    try:
        return console.review(rt, args.action, args.id, args.incident, args.note)
    finally:
        rt.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from api.demo import run_demo

    return run_demo(Path(args.dir), incidents=args.incidents)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qloop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`qloop COMMAND --help` describes a command and its options.",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="how much to log on stderr (default $QLOOP_LOG_LEVEL, else INFO for serve, "
        "worker and scheduler and WARNING for the other commands)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of these commands:"
    )

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            help=f"the YAML config file (default $QLOOP_CONFIG, else ./{DEFAULT_CONFIG})",
        )
        return p

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    p = command("init", "write a commented, runnable config to start from (SQLite + sandbox)")
    p.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_CONFIG,
        help=f"the file to write, or a folder to write {DEFAULT_CONFIG} in "
        f"(default ./{DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite an existing file (default: refuse)"
    )
    p.set_defaults(func=cmd_init)

    p = command("validate", "check a config file and list every problem with file, line and key")
    p.add_argument("file", help="the YAML config file to check")
    p.add_argument(
        "--show",
        action="store_true",
        help="also print the effective config (defaults filled in, secrets masked)",
    )
    p.set_defaults(func=cmd_validate)

    p = with_config(command("run", "run the whole loop once now (idempotent); creates the store"))
    p.add_argument(
        "--cycles", type=positive_int, default=1, help="run the loop this many times (default 1)"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print no progress, only errors (default: off)"
    )
    p.set_defaults(func=cmd_run)

    p = with_config(
        command("scheduler", "run the loop's jobs on their cron schedules until stopped")
    )
    p.add_argument("--max-ticks", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_scheduler)

    p = with_config(
        command("export", "write a month's compliance export (one file per policy); read-only")
    )
    p.add_argument("--period", required=True, help="the month to export, YYYY-MM (required)")
    p.add_argument(
        "--format",
        choices=("csv", "xlsx", "jsonl"),
        default="csv",
        help="file format (default csv)",
    )
    p.add_argument(
        "--out", default="exports", help="folder to write the files in (default ./exports)"
    )
    p.add_argument("--policy", default=None, help="export only this policy (default: every policy)")
    p.add_argument(
        "--unmask",
        action="store_true",
        help="show customers' contact details unmasked (default: masked)",
    )
    p.add_argument(
        "--as-of",
        type=as_of_arg,
        default=None,
        help="recompute the month from the stored facts as of this instant, ISO 8601 with a "
        "zone: the same facts give the same bytes whenever run (default: the stored verdicts)",
    )
    p.set_defaults(func=cmd_export)

    p = with_config(command("outbox", "list pending and dead outgoing items; replay dead ones"))
    p.add_argument(
        "action",
        choices=("list", "replay"),
        help="list: items not yet sent (read-only); replay: put dead items back to send",
    )
    p.add_argument(
        "ids", nargs="*", type=int, help="replay: these dead item ids (default: every dead item)"
    )
    p.add_argument(
        "--state",
        choices=console.OUTBOX_STATES,
        default=None,
        help="list: only items in this state (default: pending, sending and dead)",
    )
    p.set_defaults(func=cmd_outbox)

    p = with_config(
        command("review", "list answers that matched no incident (or several); settle them")
    )
    p.add_argument(
        "action",
        choices=("list", "match", "dismiss"),
        help="list (read-only); match ID --incident N; dismiss ID",
    )
    p.add_argument("id", nargs="?", type=int, help="the review item id (match, dismiss)")
    p.add_argument("--incident", type=int, help="match: the incident id the answer belongs to")
    p.add_argument("--note", default=None, help="a note kept in the audit log (default none)")
    p.set_defaults(func=cmd_review)

    p = command("demo", "run a fresh sandbox month through the whole loop and summarise it")
    p.add_argument(
        "--dir", default=".demo", help="working folder, deleted and recreated (default ./.demo)"
    )
    p.add_argument(
        "--incidents",
        type=positive_int,
        default=None,
        help="how many sandbox incidents to generate (default 400)",
    )
    p.set_defaults(func=cmd_demo)

    for module in COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_commands(sub, with_config)
    return parser


def _log_level(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    if args.log_level:
        return str(args.log_level)
    env = os.environ.get("QLOOP_LOG_LEVEL", "").strip().upper()
    if env and env not in LOG_LEVELS:
        parser.error(f"QLOOP_LOG_LEVEL: {env!r} is not one of {', '.join(LOG_LEVELS)}")
    return env or ("INFO" if args.command in LONG_RUNNING else "WARNING")


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``qloop jobs | head``): stop quietly.

    As Python's documentation on SIGPIPE advises: point stdout at devnull so
    the interpreter's final flush does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured): no flush
        pass
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.log_level = _log_level(parser, args)
    configure(args.log_level)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) is handled below
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except ConfigError as exc:
        print(format_problems(exc), file=sys.stderr)
        return 2
    except QloopError as exc:
        print(f"qloop: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"qloop: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the database is unreachable or refused us
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(f"qloop: database error: {mask_url(first)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
