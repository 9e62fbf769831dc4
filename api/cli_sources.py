"""``qloop sources`` and ``qloop channels``: sync status, and checking a connector's access.

``qloop sources test NAME`` builds the connector from the config and asks it
what it can see (account, filter, counts, write permission). Each failure
is one clear line: wrong URL, bad credentials, missing permission, TLS.
``qloop sources rejects [NAME]`` lists the records a source sent that could
not be mapped; ``qloop sources resync NAME`` makes the next pull read the
source again (after a mapping fix), unless a sync of it is running.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.conf import ChannelConfig, SourceConfig
from core.conf.masking import scrub
from core.connector import Probe
from core.errors import ConfigError, ConnectorError, QloopError, StateError
from core.loop import rejects
from core.loop.common import collect_state_name, first_sync_run
from core.runtime import Runtime, open_runtime
from core.store import open_database
from core.store.models import SourceState, SyncRun
from workers import guard, jobs

Kind = Literal["source", "channel"]


def _state_name(kind: Kind, name: str) -> str:
    return name if kind == "source" else collect_state_name(name)


def list_status(rt: Runtime, kind: Kind, only: str | None = None) -> int:
    """Print each configured source or channel (or ``only`` that one) with its last sync."""
    configured: Mapping[str, SourceConfig | ChannelConfig] = (
        rt.config.sources if kind == "source" else rt.config.channels
    )
    if only is not None:
        if only not in configured:
            known = ", ".join(sorted(configured)) or "none configured"
            msg = f"unknown {kind} {only!r}; known: {known}"
            raise ConfigError(msg)
        configured = {only: configured[only]}
    with rt.db.session() as s:
        states = {st.name: st for st in s.scalars(select(SourceState))}
        rejected = rejects.open_counts(s)
    zone = ZoneInfo(rt.config.timezone)
    for name, cfg in configured.items():
        st = states.get(_state_name(kind, name))
        enabled = "" if cfg.enabled else " (disabled)"
        print(f"{name}: type {cfg.type}, schedule {cfg.schedule!r}{enabled}")
        if st is None:
            print("  never synced")
            continue
        last_run = st.last_run_at.astimezone(zone).isoformat() if st.last_run_at else "-"
        last_ok = st.last_ok_at.astimezone(zone).isoformat() if st.last_ok_at else "-"
        print(f"  last run {last_run}; last success {last_ok}")
        if st.last_error:
            print(f"  last error: {scrub(st.last_error)}")
        if kind == "source":
            print_first_sync(rt, name, zone)
        key = name if kind == "source" else collect_state_name(name)
        if rejected.get(key):
            print(f"  {rejected[key]} rejected record(s): qloop {kind}s rejects {name}")
    return 0


def print_first_sync(rt: Runtime, name: str, zone: ZoneInfo) -> None:
    """The tool's own count at the last first sync beside what that sync read (SPEC §11)."""
    with rt.db.session() as s:
        run = first_sync_run(s, name)
        last_own = s.scalars(
            select(SyncRun.skipped_own)
            .where(SyncRun.connector == name)
            .order_by(SyncRun.id.desc())
            .limit(1)
        ).first()
    if run is not None:
        read = run.seen + run.errors + run.skipped_own
        verdict = "as the tool counts" if read == run.tool_count else "DIFFERS from the tool"
        print(
            f"  first sync {run.started_at.astimezone(zone):%Y-%m-%d %H:%M}: read {read} "
            f"({run.seen} stored, {run.errors} rejected, {run.skipped_own} own tickets skipped); "
            f"the tool counts {run.tool_count} in scope: {verdict}"
        )
    if last_own:
        print(f"  last run left out {last_own} of qloop's own ticket(s)")


def list_rejects(rt: Runtime, kind: Kind, name: str | None, show_all: bool) -> int:
    """Print the records a source (or channel) sent that could not be mapped.

    The open ones, or with ``show_all`` the resolved ones too; every source's
    (every channel's) when ``name`` is None.
    """
    if name is not None:
        if kind == "source":
            rt.source_config(name)  # an unknown name is an error listing the valid ones
        elif name not in rt.config.channels:
            known = ", ".join(sorted(rt.config.channels)) or "none configured"
            msg = f"unknown channel {name!r}; known: {known}"
            raise ConfigError(msg)
    key = name if kind == "source" or name is None else collect_state_name(name)
    zone = ZoneInfo(rt.config.timezone)
    with rt.db.session() as s:
        rows = [
            row
            for row in rejects.listing(s, key, resolved=show_all)
            if row.source.startswith(collect_state_name("")) == (kind == "channel")
        ]
    if not rows:
        print("no rejected records" if show_all else "no open rejected records")
        return 0

    def at(t: datetime) -> str:
        return f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S}"

    for row in rows:
        state = f"resolved {at(row.resolved_at)}" if row.resolved_at else "open"
        updated = at(row.source_updated_at) if row.source_updated_at else "-"
        print(
            f"{row.source} {row.key} [{state}] field {row.field or '-'}; "
            f"updated in source {updated}; seen {row.times}x, last {at(row.last_seen_at)}"
        )
        print(f"  {row.error}")
    open_rows = sum(1 for r in rows if r.resolved_at is None)
    if open_rows and kind == "source":
        print(
            f"{open_rows} open: fix the mapping, then `qloop sources resync NAME`; or fix the "
            "record in the source (its next version is pulled and resolves it)"
        )
    elif open_rows:
        print(
            f"{open_rows} open: fix the channel's mapping, or the record at the provider "
            "(a corrected record the channel sends again is stored and resolves it)"
        )
    return 0


def resync_source(rt: Runtime, name: str) -> int:
    """Clear the source's cursor under its sync lease; 1 when a sync of it is running."""
    with guard.lease(rt.db, jobs.job_key("sync", name), guard.default_owner("resync")) as held_by:
        if held_by is not None:
            msg = f"a sync of {name} is running ({held_by.owner}); try again when it ends"
            raise StateError(msg)
        before = rejects.resync(rt, name, "cli")
    print(f"{name}: cursor cleared (was {before or 'empty'}); the next sync reads the source again")
    return 0


def test_connector(rt: Runtime, kind: Kind, name: str) -> int:
    """Build connector ``name`` and print what it can see; 1 when it cannot work."""
    conn = rt.source(name) if kind == "source" else rt.channel(name)
    if not isinstance(conn, Probe):
        print(f"{name}: the {kind} type {_type_of(rt, kind, name)!r} has no access check")
        return 0
    try:
        lines = rt.call(conn.probe)
    except ConnectorError as exc:
        print(f"{name}: FAILED — {scrub(str(exc))}")
        return 1
    print(f"{name}: OK")
    for line in lines:
        print(f"  {line}")
    return 0


def _type_of(rt: Runtime, kind: Kind, name: str) -> str:
    configured = rt.config.sources if kind == "source" else rt.config.channels
    return configured[name].type


def _command(kind: Kind) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from api.cli import _load

        cfg = _load(args)
        if args.action == "test":  # checks the remote only: works before any store exists
            rt = Runtime(config=cfg, db=open_database("sqlite://", migrate_schema=False))
        else:
            rt = open_runtime(cfg, existing=args.action in ("list", "rejects"))
        try:
            if args.action == "list":
                return list_status(rt, kind, args.name)
            if args.action == "rejects":
                return list_rejects(rt, kind, args.name, args.all)
            if not args.name:
                msg = f"qloop {kind}s {args.action} needs the {kind}'s name"
                raise QloopError(msg)
            if args.action == "resync":
                return resync_source(rt, args.name)
            return test_connector(rt, kind, args.name)
        finally:
            rt.close()

    return run


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``sources`` and ``channels`` to the ``qloop`` command."""
    for kind in ("source", "channel"):
        text = f"{kind}s' sync status; check a {kind}'s access"
        p = with_config(sub.add_parser(f"{kind}s", help=text, description=text))
        actions = ("list", "test", "rejects") + (("resync",) if kind == "source" else ())
        what = (
            "list: last sync and error (read-only); test NAME: check URL, credentials and "
            "permissions; rejects [NAME]: records the mapping refused; resync NAME: read it all "
            "again at the next sync"
            if kind == "source"
            else "list: last collection and error (read-only); test NAME: check access; "
            "rejects [NAME]: records the channel's mapping refused"
        )
        p.add_argument("action", choices=actions, help=what)
        p.add_argument(
            "name", nargs="?", help=f"the {kind} to test, resync or list (default: every {kind})"
        )
        p.add_argument(
            "--all", action="store_true", help="rejects: resolved ones too (default: open ones)"
        )
        p.set_defaults(func=_command(kind))
