"""The report's data for a month, from the stored facts seen at ``as_of`` (writes nothing).

Sections, per policy and (when there are several) for all policies
together: ``indicators`` (the export's, :func:`core.export.as_of.indicators_as_of`),
``breakdown`` (per source, service, priority, customer organisation),
``trend`` (12 months, all judged at the same ``as_of``), ``summary``,
``nonconformities`` (open past deadline, closure times), ``sla_disagreements``
with their causes, ``survey`` (per stratum). No contact detail or title is
included: the report holds no personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.compliance import whole_second
from core.errors import InputError
from core.export.as_of import month_candidates
from core.gcfreeze import old_objects_frozen
from core.report.fold import MonthFold
from core.report.indicators import breakdown, indicators_of
from core.report.model import Report
from core.report.ncs import nc_section
from core.report.survey import survey_section
from core.report.trend import months_back, summary, trend_point
from core.runtime import Runtime
from core.stamps import Stamps
from core.timeutil import parse_month

REPORT_VERSION = 2
"""Version of the JSON document (1: the indicators-only ``GET /reports/{period}``)."""


class _Months:
    """Folded months, each judged once per report (the trend and every section share them).

    The incidents of a policy's trend months are found in one read
    (:func:`month_candidates`) when the first of its months is asked for.
    """

    def __init__(self, rt: Runtime, s: Session, as_of: datetime, period: str) -> None:
        self.rt, self.s, self.as_of = rt, s, as_of
        self.months = months_back(period)
        self.cache: dict[tuple[str, str], MonthFold] = {}
        self.candidates: dict[str, dict[str, list[int]]] = {}

    def get(self, policy: str, month: str) -> MonthFold:
        key = (policy, month)
        if key not in self.cache:
            if policy not in self.candidates:
                self.candidates[policy] = month_candidates(
                    self.rt, self.s, policy, self.months, self.as_of
                )
            ids = self.candidates[policy].get(month)
            self.cache[key] = MonthFold.judge(self.rt, self.s, policy, month, self.as_of, ids)
        return self.cache[key]


def _section(
    rt: Runtime, s: Session, cache: _Months, names: Sequence[str], period: str
) -> dict[str, Any]:
    folds = [cache.get(n, period) for n in names]
    trend = []
    indicators: dict[str, Any] = {}
    previous: dict[str, Any] | None = None
    for month in months_back(period):
        ind = indicators_of([cache.get(n, month).indicators for n in names])
        trend.append(trend_point(ind))
        if month == period:
            indicators = ind
        else:
            previous = ind
    return {
        "policy": names[0] if len(names) == 1 else "all",
        "policies": list(names),
        "version": rt.policy(names[0]).version if len(names) == 1 else None,
        "indicators": indicators,
        "breakdown": breakdown([f.groups for f in folds]),
        "trend": trend,
        "summary": summary(indicators, previous) if previous is not None else [],
        "nonconformities": nc_section([f.ncs for f in folds]),
        "sla_disagreements": [row for f in folds for row in f.sla_disagreements],
        "survey": [
            row for f in folds for row in survey_section(s, f.policy, f.month, f.as_of, f.answered)
        ],
    }


def default_lang(rt: Runtime, names: Sequence[str]) -> str:
    """``zh-CN`` when a reported policy's calendar is China's, else ``en``."""
    cn = any((rt.policy(n).calendar.country or "").upper() == "CN" for n in names)
    return "zh-CN" if cn else "en"


def build_report(rt: Runtime, period: str, *, as_of: datetime, policy: str | None = None) -> Report:
    """The month's report as of ``as_of``, for one policy or every policy (and all together).

    The same stored facts and ``as_of`` give the same report whenever it runs.

    Raises:
        InputError: A bad period, a naive ``as_of`` or an unknown policy.
    """
    parse_month(period)
    if as_of.tzinfo is None:
        msg = "as_of: give an instant with a zone"
        raise InputError(msg, field="as_of")
    at = whole_second(as_of)
    if policy is not None and policy not in rt.policies:
        msg = f"policy: unknown policy {policy!r}; known: {', '.join(sorted(rt.policies))}"
        raise InputError(msg, field="policy")
    names = [policy] if policy else sorted(rt.policies)
    scope = names[0] if len(names) == 1 else "all"
    stamps = Stamps.current()
    with old_objects_frozen(), rt.db.session() as s:
        cache = _Months(rt, s, at, period)
        sections = [_section(rt, s, cache, [n], period) for n in names]
        together = _section(rt, s, cache, names, period) if len(names) > 1 else None
    data: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "period": period,
        "as_of": at.isoformat(),
        "timezone": rt.config.timezone,
        "scope": scope,
        "qloop_version": stamps.qloop,
        "holidays_version": stamps.holidays,
        "policies": sections,
        "all": together,
    }
    return Report(
        period=period,
        as_of=at,
        scope=scope,
        default_lang=default_lang(rt, names),
        timezone=rt.config.timezone,
        data=data,
    )
