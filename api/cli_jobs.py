"""``qloop worker`` and ``qloop jobs``: RQ workers and a look at their queues.

Both need ``redis_url`` in the config (embedded mode has no queues: its
``qloop scheduler`` runs every job in-process).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from redis import Redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result

from core.conf import AppConfig, load_config
from core.errors import ConfigError, InputError
from core.logs import mask_log_text
from workers import queue

DEFAULT_CONFIG = "qloop.yaml"


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("QLOOP_CONFIG") or DEFAULT_CONFIG)


def _redis_config(args: argparse.Namespace) -> tuple[Path, AppConfig, str]:
    path = _config_path(args)
    cfg = load_config(path)
    if not cfg.redis_url:
        msg = (
            f"{path}: redis_url is not set; workers and queues need Redis "
            "(without it, `qloop scheduler` runs every job in-process)"
        )
        raise ConfigError(msg)
    return path, cfg, cfg.redis_url


def _kinds(values: Iterable[str] | None) -> list[str]:
    kinds = [k for v in values or () for k in v.split(",") if k] or list(queue.KINDS)
    unknown = [k for k in kinds if k not in queue.KINDS]
    if unknown:
        msg = f"--queues: unknown queue(s) {', '.join(unknown)}; known: {', '.join(queue.KINDS)}"
        raise InputError(msg)
    return kinds


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.rq_worker import run_worker

    path, _, url = _redis_config(args)
    run_worker(
        url,
        _kinds(args.queues),
        burst=args.burst,
        logging_level=args.log_level.upper(),
        config_path=path,
    )
    return 0


def error_text(job: Job) -> str:
    """The traceback of the job's latest failure ("" if it has not failed).

    Secrets and personal data in it are masked (RQ stores the traceback as it was).
    """
    result = job.latest_result()
    if result is None or result.type != Result.Type.FAILED:
        return ""
    return mask_log_text(result.exc_string or "")


def _error_line(job: Job) -> str:
    exc = error_text(job)
    lines = [line for line in exc.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error recorded)"


def _fetch(conn: Redis, ids: Iterable[str]) -> list[Job]:
    return [j for j in Job.fetch_many(list(ids), connection=conn) if j is not None]


def _when(job: Job) -> str:
    at = job.ended_at or job.started_at or job.enqueued_at
    return at.isoformat(timespec="seconds") if at else "-"


def jobs_list(conn: Redis, out: Callable[[str], None] = print) -> None:
    """Each queue's depth, started and scheduled jobs, and failed count."""
    for q in queue.all_queues(conn):
        started = StartedJobRegistry(queue=q)
        scheduled = ScheduledJobRegistry(queue=q)  # type: ignore[no-untyped-call]
        failed = FailedJobRegistry(queue=q)
        out(
            f"{q.name:<10} queued {q.count:>4}  started {started.count:>3}  "
            f"scheduled {scheduled.count:>3}  failed {failed.count:>3}"
        )
        for job in _fetch(conn, started.get_job_ids()):
            out(f"  started    {job.id}  since {_when(job)}  {job.description}")
        for job in _fetch(conn, scheduled.get_job_ids()):
            at = scheduled.get_scheduled_time(job)
            out(f"  scheduled  {job.id}  at {at.isoformat(timespec='seconds')}  (retry)")
        for job in q.get_jobs():
            out(f"  queued     {job.id}  {job.description}")


def jobs_failed(conn: Redis, out: Callable[[str], None] = print) -> int:
    """Every failed job with its error; returns how many."""
    n = 0
    for q in queue.all_queues(conn):
        for job in _fetch(conn, FailedJobRegistry(queue=q).get_job_ids()):
            n += 1
            out(f"{q.name:<10} {job.id}  {_when(job)}  {_error_line(job)}")
    if not n:
        out("no failed jobs")
    return n


def jobs_requeue(
    conn: Redis, ids: Iterable[str], every: bool, out: Callable[[str], None] = print
) -> int:
    """Requeue failed jobs (``ids``, or all with ``every``); returns how many."""
    wanted = set(ids)
    done = 0
    for q in queue.all_queues(conn):
        registry = FailedJobRegistry(queue=q)
        for jid in registry.get_job_ids():
            if every or jid in wanted:
                registry.requeue(jid)
                wanted.discard(jid)
                done += 1
                out(f"requeued {jid} on {q.name}")
    if wanted:
        msg = f"not in any failed registry: {', '.join(sorted(wanted))}"
        raise InputError(msg)
    return done


def cmd_jobs(args: argparse.Namespace) -> int:
    path, _, url = _redis_config(args)
    conn = queue.connect(url)
    if args.action == "list":
        jobs_list(conn)
    elif args.action == "failed":
        jobs_failed(conn)
    elif args.action == "requeue":
        if not args.args and not args.all:
            msg = "jobs requeue: name job ids, or --all"
            raise InputError(msg)
        try:
            jobs_requeue(conn, args.args, args.all)
        except (NoSuchJobError, InvalidJobOperation) as exc:
            msg = f"jobs requeue: {exc}"
            raise InputError(msg) from exc
    else:  # enqueue KIND [NAME]
        if not args.args:
            msg = (
                f"jobs enqueue: name a kind ({', '.join(queue.KINDS)}) "
                "and a source, channel or partition k/n"
            )
            raise InputError(msg)
        kind, name = args.args[0], (args.args[1] if len(args.args) > 1 else None)
        print(queue.enqueue(conn, str(path.resolve()), kind, name))
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``worker`` and ``jobs`` to the ``qloop`` command."""
    text = "run an RQ worker until stopped (needs redis_url)"
    p = with_config(sub.add_parser("worker", help=text, description=text))
    p.add_argument(
        "--queues",
        nargs="+",
        metavar="QUEUE",
        help=f"queues to work, in priority order (default: {' '.join(queue.KINDS)})",
    )
    p.add_argument(
        "--burst",
        action="store_true",
        help="stop when the queues are empty (default: wait for more jobs)",
    )
    p.set_defaults(func=cmd_worker)

    text = "queue depths, running and failed jobs; requeue or enqueue jobs (needs redis_url)"
    p = with_config(sub.add_parser("jobs", help=text, description=text))
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=("list", "failed", "requeue", "enqueue"),
        help="list (default), failed, requeue ID…|--all, enqueue KIND [NAME]",
    )
    p.add_argument(
        "args",
        nargs="*",
        help=f"requeue: job ids; enqueue: KIND ({', '.join(queue.KINDS)}) and, for sync and "
        "collect, the source or channel name; for the *-part kinds, the partition k/n",
    )
    p.add_argument(
        "--all", action="store_true", help="requeue: every failed job (default: only those named)"
    )
    p.set_defaults(func=cmd_jobs)
