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


def _whole(j: Judged) -> str:
    """The group of the whole month (every incident)."""
    return ""


Kind = tuple[Any, ...]
"""What :class:`IndicatorsFold` reads of one incident (:func:`_kind`): incidents of
the same kind add the same to every count."""


def _kind(j: Judged, as_of: datetime) -> Kind:
    ev = j.evaluation
    return (
        j.incident.priority,
        ev.month,
        ev.cancelled,
        ev.callback_verdict,
        ev.confirmed,
        ev.callback_score,
        ev.survey_score,
        ev.response_met,
        ev.resolution_met,
        tuple((f.rule, f.severity, _closed(j, f.key), f.deadline < as_of) for f in ev.findings),
    )


def _closed(j: Judged, key: str) -> bool:
    nc = j.ncs[key]
    return nc is not None and nc.state == "closed"


class MonthFold:
    """The report's aggregates of one policy's month as of an instant.

    The indicators (of the month and of each group) are tallied first: each
    group counts its incidents per kind (:func:`_kind`), and each kind is
    added to the group's :class:`IndicatorsFold` once, with its count, when
    the month is judged (integer counts: the same numbers as adding the
    incidents one by one).
    """

    def __init__(self, rt: Runtime, policy: str, month: str, as_of: datetime) -> None:
        self.policy, self.month, self.as_of = policy, month, as_of
        self.rules = rt.policy(policy)
        self.indicators = self._fold()
        self.groups: dict[str, dict[str, IndicatorsFold]] = {dim: {} for dim in DIMENSIONS}
        self.ncs = NcFold(policy, as_of)
        self._sla: list[tuple[tuple[datetime, int], int, dict[str, Any]]] = []
        self.answered: set[int] = set()
        """The month's incidents with a survey score as of the instant."""
        self._kinds: dict[Kind, Judged] = {}
        """Each kind met → its first incident (what the folds are fed)."""
        self._tally: dict[str, dict[str, dict[Kind, int]]] = {dim: {} for dim in ("", *DIMENSIONS)}
        """Dimension ("" for the whole month) → group value → kind → incidents."""

    def _fold(self) -> IndicatorsFold:
        return IndicatorsFold(self.month, self.as_of, policy=self.rules)

    def _add(self, j: Judged) -> None:
        kind = _kind(j, self.as_of)
        self._kinds.setdefault(kind, j)
        tally = self._tally
        for dim, key in (("", _whole), *DIMENSIONS.items()):
            groups = tally[dim]
            value = key(j)
            counts = groups.get(value)
            if counts is None:
                counts = groups[value] = {}
            counts[kind] = counts.get(kind, 0) + 1
        self.ncs.add(j)
        if j.evaluation.survey_score is not None:
            self.answered.add(j.incident.id)

    def _settle(self) -> None:
        """Feed the tallied kinds to the folds (in the order the kinds were first met)."""
        for dim, groups in self._tally.items():
            for value, counts in groups.items():
                if dim:
                    fold = self.groups[dim][value] = self._fold()
                else:
                    fold = self.indicators
                for kind, n in counts.items():
                    j = self._kinds[kind]
                    ev = j.evaluation
                    fold.add(j.incident.priority, ev, n)
                    for f in ev.findings:
                        state = NonconformityState(
                            f.rule, f.severity, _closed(j, f.key), f.deadline
                        )
                        fold.add_nc(state, n)
        self._tally = {dim: {} for dim in self._tally}

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
        fold._settle()
        return fold

    @property
    def sla_disagreements(self) -> list[dict[str, Any]]:
        """The month's SLA disagreements in the period's order."""
        return [row for *_, row in sorted(self._sla, key=lambda item: item[:2])]
