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
from core.export.as_of import Period, judge_period
from core.report.indicators import breakdown, indicators_of
from core.report.model import Report
from core.report.ncs import nc_section
from core.report.sla import disagreements
from core.report.survey import survey_section
from core.report.trend import months_back, summary, trend_point
from core.runtime import Runtime
from core.stamps import Stamps
from core.timeutil import parse_month

REPORT_VERSION = 2
"""Version of the JSON document (1: the indicators-only ``GET /reports/{period}``)."""


class _Periods:
    """Judged months, each computed once per report."""

    def __init__(self, rt: Runtime, s: Session, as_of: datetime) -> None:
        self.rt, self.s, self.as_of = rt, s, as_of
        self.cache: dict[tuple[str, str], Period] = {}

    def get(self, policy: str, month: str) -> Period:
        key = (policy, month)
        if key not in self.cache:
            self.cache[key] = judge_period(self.rt, self.s, policy, month, self.as_of)
        return self.cache[key]


def _section(
    rt: Runtime, s: Session, cache: _Periods, names: Sequence[str], period: str
) -> dict[str, Any]:
    periods = [cache.get(n, period) for n in names]
    trend = []
    indicators: dict[str, Any] = {}
    previous: dict[str, Any] | None = None
    for month in months_back(period):
        ind = indicators_of(rt, [cache.get(n, month) for n in names])
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
        "breakdown": breakdown(rt, periods),
        "trend": trend,
        "summary": summary(indicators, previous) if previous is not None else [],
        "nonconformities": nc_section(periods),
        "sla_disagreements": [
            row
            for n, p in zip(names, periods, strict=True)
            for row in disagreements(s, rt.policy(n), p)
        ],
        "survey": survey_section(s, periods),
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
    stamps = Stamps.current()
    with rt.db.session() as s:
        cache = _Periods(rt, s, at)
        sections = [_section(rt, s, cache, [n], period) for n in names]
        together = _section(rt, s, cache, names, period) if len(names) > 1 else None
    data: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "period": period,
        "as_of": at.isoformat(),
        "timezone": rt.config.timezone,
        "scope": policy or "all",
        "qloop_version": stamps.qloop,
        "holidays_version": stamps.holidays,
        "policies": sections,
        "all": together,
    }
    return Report(
        period=period,
        as_of=at,
        scope=policy or "all",
        default_lang=default_lang(rt, names),
        timezone=rt.config.timezone,
        data=data,
    )
