"""A policy's month as of an instant, in period order, without holding the month in memory.

The export of a month as of an instant (:func:`core.export.month.month_tables`:
``qloop export --as-of``, ``GET /exports?as_of=``, the evidence pack) lists the
incidents in period order (:func:`core.export.as_of.period_order`: by
resolution, then incident id), but :func:`core.export.as_of.judge_chunks`
judges them in incident id order, a chunk at a time. Instead of keeping every
judged incident to sort them (:func:`core.export.as_of.judge_period`), each
one is turned at once into its export row and its nonconformity rows, which
are pickled into an anonymous temporary file (the spill); memory keeps its
sort key and where its rows lie, in arrays (40 bytes an incident while
judging, 24 once sorted). The month's
indicators are folded on the way (:class:`IndicatorsFold`, fed what
:func:`core.export.as_of.indicators_as_of` is fed). The rows are then read
back in period order: the same rows, hence the same bytes, as from
:func:`core.export.as_of.rows_as_of` and
:func:`core.export.nc_sheet.nc_rows_as_of` over the whole period.

The spill is only this process's: the file has no name (deleted as soon as
created), and is closed with :meth:`SpilledMonth.close` or when the month
(and every reader of its rows) is let go.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from array import array
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import IO, Any

from sqlalchemy.orm import Session

from core.compliance import MonthlyIndicators, whole_second
from core.compliance.indicators import IndicatorsFold
from core.export.as_of import judge_chunks, nc_states, period_order, row_as_of
from core.export.nc_sheet import NC_COLUMNS, finding_rows
from core.export.rows import COLUMNS
from core.runtime import Runtime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _pack(row: Mapping[str, Any], columns: tuple[str, ...]) -> Any:
    """A row as its values when its keys are ``columns`` in order (smaller), else as it is."""
    return tuple(row.values()) if tuple(row) == columns else row


def _unpack(data: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(columns, data, strict=True)) if type(data) is tuple else data


class SpilledMonth:
    """One policy's month as of an instant: its indicators, and its rows on disk.

    Built by :func:`spill_month`. :meth:`incident_rows` and :meth:`nc_rows`
    read the rows back in period order, as often as asked, until closed.
    """

    def __init__(
        self,
        policy: str,
        month: str,
        as_of: datetime,
        indicators: MonthlyIndicators,
        spill: IO[bytes],
        order: array[int],
        starts: array[int],
        splits: array[int],
    ) -> None:
        self.policy, self.month, self.as_of = policy, month, as_of
        self.indicators = indicators
        """The month's indicators (what :func:`indicators_as_of` gives)."""
        self._spill = spill
        self._order = order
        """Record numbers in period order."""
        self._starts = starts
        """Where each record starts in the spill (one more: where the last ends)."""
        self._splits = splits
        """Where each record's nonconformity rows start (its end when it has none)."""
        self._close = weakref.finalize(self, spill.close)

    def __len__(self) -> int:
        """How many incidents the month has."""
        return len(self._order)

    def close(self) -> None:
        """Let go of the spill (its rows cannot be read any more)."""
        self._close()

    def __enter__(self) -> SpilledMonth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, start: int, end: int) -> Any:
        return pickle.loads(os.pread(self._spill.fileno(), end - start, start))

    def incident_rows(self) -> Iterator[dict[str, Any]]:
        """The export rows (:data:`COLUMNS`), in period order."""
        starts, splits = self._starts, self._splits
        for i in self._order:
            yield _unpack(self._read(starts[i], splits[i]), COLUMNS)

    def nc_rows(self) -> Iterator[dict[str, Any]]:
        """The nonconformity rows (:data:`NC_COLUMNS`), by incident in period order."""
        starts, splits = self._starts, self._splits
        for i in self._order:
            if splits[i] < starts[i + 1]:
                for data in self._read(splits[i], starts[i + 1]):
                    yield _unpack(data, NC_COLUMNS)


def spill_month(
    rt: Runtime,
    s: Session,
    policy: str,
    month: str,
    as_of: datetime,
    *,
    tz: tzinfo,
    unmask: bool,
) -> SpilledMonth:
    """Judge the policy's month from the stored facts seen at ``as_of``, rows to a spill.

    Reads the store once (:func:`judge_chunks`) and writes nothing to it;
    the rows read back need no session.
    """
    as_of = whole_second(as_of)
    fold = IndicatorsFold(month, as_of, policy=rt.policy(policy))
    # in arrays, not lists of ints: nothing per incident among the objects each chunk frees
    whens, ids, starts, splits = array("q"), array("q"), array("q"), array("q")
    spill = tempfile.TemporaryFile(prefix="qloop-as-of-")  # noqa: SIM115 (the month owns it)
    try:
        at = 0
        for chunk in judge_chunks(rt, s, policy, month, as_of):
            for j in chunk.incidents:
                fold.add(j.incident.priority, j.evaluation)
                for state in nc_states(j):
                    fold.add_nc(state)
                when, inc_id = period_order(j, as_of)
                whens.append((when - _EPOCH) // _MICROSECOND)
                ids.append(inc_id)
                row = pickle.dumps(_pack(row_as_of(j, tz=tz, unmask=unmask), COLUMNS), -1)
                findings = [
                    _pack(r, NC_COLUMNS) for r in finding_rows(j, as_of, tz=tz, unmask=unmask)
                ]
                ncs = pickle.dumps(findings, -1) if findings else b""
                starts.append(at)
                splits.append(at + len(row))
                spill.write(row)
                spill.write(ncs)
                at += len(row) + len(ncs)
        starts.append(at)
        spill.flush()
        order = sorted(range(len(ids)), key=ids.__getitem__)
        order.sort(key=whens.__getitem__)  # stable: by resolution, then id
    except BaseException:
        spill.close()
        raise
    return SpilledMonth(
        policy, month, as_of, fold.result(), spill, array("q", order), starts, splits
    )
