"""Tracking start per source (SPEC §11): from when qloop contacts customers.

A source's tracking start is its ``tracking_from`` in the config, else the
instant its first successful pull ended (stored once in
``connector_state.tracking_from``). qloop never phones or surveys a customer
about a resolution whose callback due is before it: such a resolution's
verdict is ``untracked`` (:meth:`core.compliance.Policy.callback_verdict`),
it gets no callback task and no survey, and is counted apart. While a
source has no tracking start yet (no successful pull), plan leaves its
incidents for later and evaluate judges them as of the evaluation instant
(every resolution due before it is ``untracked``; one due later is
``pending`` and judged again at its due, when the start is known).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from core.loop.common import connector_state
from core.runtime import Runtime
from core.store.models import SourceState, SyncRun


def record_tracking_start(rt: Runtime, source: str) -> datetime:
    """Set ``source``'s stored tracking start once, after a successful pull; returns it.

    The instant is the end of the source's first successful pull (the run just
    ended, or an earlier one recorded before this rule existed).
    """
    with rt.db.session() as s:
        state = connector_state(s, source)
        if state.tracking_from is None:
            first = s.scalar(
                select(func.min(SyncRun.finished_at)).where(
                    SyncRun.connector == source, SyncRun.kind == "pull", SyncRun.status == "ok"
                )
            )
            state.tracking_from = first if first is not None else rt.now()
        return state.tracking_from


def tracking_starts(rt: Runtime) -> dict[str, datetime | None]:
    """Every configured source's tracking start: the config's, else the stored one, else None."""
    names = list(rt.config.sources)
    with rt.db.session() as s:
        stored = dict(
            s.execute(
                select(SourceState.name, SourceState.tracking_from).where(
                    SourceState.name.in_(names)
                )
            ).all()
        )
    return {
        name: cfg.tracking_from if cfg.tracking_from is not None else stored.get(name)
        for name, cfg in rt.config.sources.items()
    }
