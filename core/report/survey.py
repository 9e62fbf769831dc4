"""Survey coverage per stratum: every draw of the month's sample (first and top-ups).

Per stratum, over the draws seen at ``as_of``: ``size`` (members considered),
``picked``, ``achieved_rate`` (picked / size), ``answered`` (members of the
month with a survey score as of the instant) and ``response_rate``
(answered / picked).
"""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.compliance import seen_at
from core.store.models import SampleRun


def survey_section(
    s: Session, policy: str, month: str, as_of: datetime, answered_ids: Set[int]
) -> list[dict[str, Any]]:
    """One row per stratum of the policy's month, in stratum order.

    ``answered_ids``: the month's incidents with a survey score as of ``as_of``.
    """
    out: list[dict[str, Any]] = []
    strata: dict[tuple[str, ...], dict[str, Any]] = {}
    draws = 0
    for run in s.scalars(
        select(SampleRun)
        .where(SampleRun.policy == policy, SampleRun.month == month)
        .order_by(SampleRun.draw)
    ):
        if not seen_at(run.created_at, as_of):
            continue
        draws += 1
        for st in run.strata or []:
            key = tuple(str(x) for x in st.get("stratum", []))
            row = strata.setdefault(key, {"size": 0, "picked": 0, "answered": 0})
            row["size"] += int(st.get("size", 0))
            row["picked"] += int(st.get("picked", 0))
            row["answered"] += sum(1 for m in st.get("members", []) if m in answered_ids)
    for key in sorted(strata):
        row = strata[key]
        out.append(
            {
                "policy": policy,
                "stratum": " / ".join(key),
                "draws": draws,
                **row,
                "achieved_rate": row["picked"] / row["size"] if row["size"] else None,
                "response_rate": row["answered"] / row["picked"] if row["picked"] else None,
            }
        )
    return out
