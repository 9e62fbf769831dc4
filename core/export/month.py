"""The month's export as files (``qloop export``), and the audit entry every export leaves."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.compliance.indicators import IndicatorsFold
from core.errors import InputError
from core.export.files import write_files
from core.export.nc_sheet import nc_table, nc_tuples
from core.export.rows import (
    COLUMN_KINDS,
    COLUMNS,
    RecordTally,
    export_columns,
    fold_nonconformities,
)
from core.export.spill import spill_month
from core.export.split import split_incidents
from core.export.writers import Table, check_format, files_of, indicators_table
from core.gcfreeze import fewer_collections, old_objects_frozen
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
    as_of: datetime | None = None,
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
    if as_of is not None:
        detail["as_of"] = as_of.isoformat()
    audit(session, rt, "export", "period", period, actor=actor, **detail)


def month_tables(
    session: Session,
    rt: Runtime,
    policy: str,
    period: str,
    *,
    unmask: bool,
    as_of: datetime | None = None,
    processes: int = 1,
    fmt: str = "csv",
    folder: Path | None = None,
) -> list[Table]:
    """The tables of one policy's month: the incidents, the indicators, the nonconformities.

    Without ``as_of``: from the stored compliance records and nonconformities;
    the indicators are counted while the incidents' rows are read, so the
    tables are read in order (the indicators raise ``RuntimeError`` if read
    before every incident row was).
    With it: recomputed from the stored facts seen at ``as_of``
    (:mod:`core.export.as_of`), the rows kept in a temporary file until read
    (:mod:`core.export.spill`); nothing is written to the store.

    ``processes`` above 1 (without ``as_of``, for ``fmt`` CSV or JSON lines): a
    large month's incidents are written by that many processes, the later
    parts into temporary files in ``folder`` (:mod:`core.export.split`).
    """
    pol = rt.policy(policy)
    tz = ZoneInfo(rt.config.timezone)
    if as_of is not None:
        spilled = spill_month(rt, session, policy, period, as_of, tz=tz, unmask=unmask)
        return [
            Table("incidents", COLUMNS, spilled.incident_rows()),
            indicators_table(spilled.indicators.as_dict()),
            nc_table(spilled.nc_rows()),
        ]
    # the indicators: the nonconformities' now, the records' counted while the rows are read
    fold = IndicatorsFold(period, rt.now(), policy=pol)
    fold_nonconformities(
        session, fold, policy=policy, version=pol.version, month=period, now=fold.now
    )
    tally = RecordTally()
    incidents = None
    if processes > 1 and folder is not None:
        incidents = split_incidents(
            rt,
            session,
            policy=policy,
            version=pol.version,
            month=period,
            tz=tz,
            unmask=unmask,
            tally=tally,
            processes=processes,
            folder=folder,
            fmt=fmt,
        )
    if incidents is None:
        batches = export_columns(
            session,
            policy=policy,
            version=pol.version,
            month=period,
            tz=tz,
            unmask=unmask,
            tally=tally,
        )
        incidents = Table("incidents", COLUMNS, batches, kinds=COLUMN_KINDS, columnar=True)

    def indicators() -> dict[str, Any]:
        tally.fold_into(fold, period)
        return fold.result().as_dict()

    ncs = nc_tuples(session, policy=policy, version=pol.version, month=period, tz=tz, unmask=unmask)
    return [
        incidents,
        indicators_table(indicators),
        nc_table(ncs, tuples=True),
    ]


def export_month(
    rt: Runtime,
    period: str,
    fmt: str,
    out: Path,
    *,
    unmask: bool = False,
    policy: str | None = None,
    actor: str | None = None,
    as_of: datetime | None = None,
    processes: int | None = None,
) -> list[Path]:
    """Write the export of ``period`` for each policy (or one) into ``out``; returns the files.

    Every file is complete or absent (:func:`core.export.files.write_files`);
    the export is audit-logged once written. With ``as_of``, the month is
    recomputed from the stored facts seen at that instant, and the same
    facts give the same bytes whenever it runs. ``processes`` (default: the
    configuration's ``export_processes``): a large month's CSV or JSON lines
    incidents file written by that many processes (:mod:`core.export.split`).
    """
    parse_month(period)
    check_format(fmt)
    if policy and policy not in rt.policies:
        msg = f"unknown policy {policy!r}; known: {', '.join(sorted(rt.policies))}"
        raise InputError(msg)
    names = [policy] if policy else sorted(rt.policies)
    if processes is None:
        processes = rt.config.export_processes
    # a month's rows allocate and free millions of objects, few in cycles (core.gcfreeze)
    with old_objects_frozen(), fewer_collections(), rt.db.session() as s:
        files = [
            file
            for name in names
            for file in files_of(
                f"qloop-{period}-{name}",
                fmt,
                month_tables(
                    s,
                    rt,
                    name,
                    period,
                    unmask=unmask,
                    as_of=as_of,
                    processes=processes,
                    fmt=fmt,
                    folder=out,
                ),
                created=as_of,
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
            as_of=as_of,
        )
    return written
