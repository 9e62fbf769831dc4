"""The month's export as files (``qloop export``), and the audit entry every export leaves."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.errors import InputError
from core.export.files import write_files
from core.export.rows import COLUMNS, export_rows, period_indicators
from core.export.writers import Table, check_format, files_of, indicators_table
from core.loop.common import audit
from core.runtime import Runtime
from core.timeutil import parse_month


def cli_actor() -> str:
    """``cli:<login>``: who ran a command on this machine, for the audit log."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (containers)
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


def audit_export(
    session: Session,
    rt: Runtime,
    *,
    actor: str,
    period: str,
    fmt: str,
    policies: Sequence[str],
    masked: bool,
    via: str,
    files: Sequence[str] = (),
) -> None:
    """Record who exported which month, in which format, and whether contacts were masked."""
    detail: dict[str, object] = {
        "format": fmt,
        "policies": list(policies),
        "masked": masked,
        "via": via,
    }
    if files:
        detail["files"] = list(files)
    audit(session, rt, "export", "period", period, actor=actor, **detail)


def month_tables(
    session: Session, rt: Runtime, policy: str, period: str, *, unmask: bool
) -> list[Table]:
    """The tables of one policy's month: the incidents, then the indicators."""
    pol = rt.policy(policy)
    indicators = period_indicators(
        session, policy=policy, version=pol.version, month=period, now=rt.now(), rules=pol
    )
    rows = export_rows(
        session,
        policy=policy,
        version=pol.version,
        month=period,
        tz=ZoneInfo(rt.config.timezone),
        unmask=unmask,
    )
    return [Table("incidents", COLUMNS, rows), indicators_table(indicators.as_dict())]


def export_month(
    rt: Runtime,
    period: str,
    fmt: str,
    out: Path,
    *,
    unmask: bool = False,
    policy: str | None = None,
    actor: str | None = None,
) -> list[Path]:
    """Write the export of ``period`` for each policy (or one) into ``out``; returns the files.

    Every file is complete or absent (:func:`core.export.files.write_files`);
    the export is audit-logged once written.
    """
    parse_month(period)
    check_format(fmt)
    if policy and policy not in rt.policies:
        msg = f"unknown policy {policy!r}; known: {', '.join(sorted(rt.policies))}"
        raise InputError(msg)
    names = [policy] if policy else sorted(rt.policies)
    with rt.db.session() as s:
        files = [
            file
            for name in names
            for file in files_of(
                f"qloop-{period}-{name}", fmt, month_tables(s, rt, name, period, unmask=unmask)
            )
        ]
        written = write_files(out, files)
        audit_export(
            s,
            rt,
            actor=actor or cli_actor(),
            period=period,
            fmt=fmt,
            policies=names,
            masked=not unmask,
            via="cli",
            files=[str(p) for p in written],
        )
    return written
