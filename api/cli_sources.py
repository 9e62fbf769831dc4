"""``qloop sources`` and ``qloop channels``: sync status, and checking a connector's access.

``qloop sources test NAME`` builds the connector from the config and asks it
what it can see (account, filter, counts, write permission). Each failure
is one clear line: wrong URL, bad credentials, missing permission, TLS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.connector import Probe
from core.errors import ConnectorError, QloopError
from core.runtime import Runtime, open_runtime
from core.store.models import SourceState

Kind = Literal["source", "channel"]


def _state_name(kind: Kind, name: str) -> str:
    return name if kind == "source" else f"channel:{name}"


def list_status(rt: Runtime, kind: Kind) -> int:
    """Print each configured source or channel with its last sync outcome."""
    configured = rt.config.sources if kind == "source" else rt.config.channels
    with rt.db.session() as s:
        states = {st.name: st for st in s.scalars(select(SourceState))}
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
            print(f"  last error: {st.last_error}")
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
        print(f"{name}: FAILED — {exc}")
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

        rt = open_runtime(_load(args))
        try:
            if args.action == "list":
                return list_status(rt, kind)
            if not args.name:
                msg = f"qloop {kind}s test needs the {kind}'s name"
                raise QloopError(msg)
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
        p = with_config(
            sub.add_parser(f"{kind}s", help=f"{kind}s' sync status; check a {kind}'s access")
        )
        p.add_argument("action", choices=("list", "test"))
        p.add_argument("name", nargs="?", help=f"the {kind} to test")
        p.set_defaults(func=_command(kind))
