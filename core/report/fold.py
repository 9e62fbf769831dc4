"""One policy's month judged as of an instant, folded into what the report shows.

The month streams from :func:`core.export.as_of.judge_chunks` a chunk of
incidents at a time; each chunk is folded into the month's indicators, the
indicators per group (:data:`core.report.indicators.DIMENSIONS`), the
nonconformities section, the SLA disagreements and the ids of the incidents
a survey answered, and then let go: a month of any size holds only these.
Every number is the one :func:`core.export.as_of.indicators_as_of` gives
for the whole month (the same :class:`IndicatorsFold`, fed the same
evaluations).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.compliance import NonconformityState
from core.compliance.indicators import IndicatorsFold
from core.export.as_of import Judged, judge_chunks, period_order
from core.report.indicators import DIMENSIONS
from core.report.ncs import NcFold
from core.report.sla import disagreements
from core.runtime import Runtime


class MonthFold:
    """The report's aggregates of one policy's month as of an instant."""

    def __init__(self, rt: Runtime, policy: str, month: str, as_of: datetime) -> None:
        self.policy, self.month, self.as_of = policy, month, as_of
        self.rules = rt.policy(policy)
        self.indicators = self._fold()
        self.groups: dict[str, dict[str, IndicatorsFold]] = {dim: {} for dim in DIMENSIONS}
        self.ncs = NcFold(policy, as_of)
        self._sla: list[tuple[tuple[datetime, int], int, dict[str, Any]]] = []
        self.answered: set[int] = set()
        """The month's incidents with a survey score as of the instant."""

    def _fold(self) -> IndicatorsFold:
        return IndicatorsFold(self.month, self.as_of, policy=self.rules)

    def _add(self, j: Judged) -> None:
        ev = j.evaluation
        folds = [self.indicators]
        for dim, key in DIMENSIONS.items():
            value = key(j)
            fold = self.groups[dim].get(value)
            if fold is None:
                fold = self.groups[dim][value] = self._fold()
            folds.append(fold)
        states = []
        for f in ev.findings:
            nc = j.ncs[f.key]
            closed = nc is not None and nc.state == "closed"
            states.append(NonconformityState(f.rule, f.severity, closed, f.deadline))
        for fold in folds:
            fold.add(j.incident.priority, ev)
            for state in states:
                fold.add_nc(state)
        self.ncs.add(j)
        if ev.survey_score is not None:
            self.answered.add(j.incident.id)

    @classmethod
    def judge(
        cls,
        rt: Runtime,
        s: Session,
        policy: str,
        month: str,
        as_of: datetime,
        candidates: Sequence[int] | None = None,
    ) -> MonthFold:
        """Judge the policy's month from the stored facts seen at ``as_of`` and fold it.

        ``candidates``: the month's incidents to judge (:func:`month_candidates`).
        """
        fold = cls(rt, policy, month, as_of)
        for chunk in judge_chunks(rt, s, policy, month, as_of, candidates=candidates):
            for j in chunk.incidents:
                fold._add(j)
            for n, row in disagreements(s, fold.rules, chunk.incidents, chunk.facts):
                j = chunk.incidents[n]
                fold._sla.append((period_order(j, as_of), len(fold._sla), row))
        return fold

    @property
    def sla_disagreements(self) -> list[dict[str, Any]]:
        """The month's SLA disagreements in the period's order."""
        return [row for *_, row in sorted(self._sla, key=lambda item: item[:2])]
