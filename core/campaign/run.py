"""The campaigns job: collect answers, send due reminders, close campaigns past their end.

Run on a schedule (``schedules.campaigns``, hourly by default) by the
``campaigns`` job of :mod:`workers.jobs`. Every part is idempotent: answers
are stored once per response, each reminder round is one outbox key, and
a closed campaign is left alone. A campaign whose channel fails is
reported in the step's errors; the others go on.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.campaign.answers import collect_answers
from core.campaign.remind import send_reminders
from core.campaign.status import close_campaign
from core.errors import QloopError
from core.loop.common import StepResult
from core.runtime import Runtime
from core.store.models import Campaign


def run_campaigns(rt: Runtime) -> StepResult:
    """One pass over the configured campaigns that are launched."""
    result = StepResult("campaigns")
    today = rt.now().astimezone(ZoneInfo(rt.config.timezone)).date()
    with rt.db.session() as s:
        launched = set(s.scalars(select(Campaign.name).where(Campaign.state == "launched")))
    for name, cfg in sorted(rt.config.campaigns.items()):
        if name not in launched:
            continue
        try:
            got = collect_answers(rt, name)
            result.counts["answers"] += got.responses
            if cfg.ends is not None and today > cfg.ends:
                result.counts["cancelled"] += close_campaign(rt, name, actor="qloop")
                result.counts["closed"] += 1
                continue
            done = send_reminders(rt, name)
            result.counts["reminders_enqueued"] += done.enqueued
            result.add(done.push)
        except QloopError as exc:
            result.errors.append(f"campaign {name}: {exc}")
    return result
