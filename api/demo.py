"""``qloop demo``: a fresh sandbox month through the whole loop, with a readable summary."""

from __future__ import annotations

import dataclasses
import os
import shutil
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

import config
from api import console
from api.demo_serve import write_serve_files
from core.campaign import (
    campaign_status,
    collect_answers,
    launch_campaign,
    plan_campaign,
    plan_text,
    send_reminders,
    status_text,
)
from core.campaign.results import campaign_results
from core.complaints.report import complaint_document, render_complaints
from core.compliance import MonthlyIndicators, Ratio, whole_second
from core.conf import AppConfig, load_config
from core.errors import InputError
from core.export import period_indicators
from core.export.files import write_files
from core.loop import run_once
from core.report import build_report, render_report
from core.report.campaign import render_results
from core.runtime import Runtime, open_runtime
from core.states import ComplaintState
from core.store.models import (
    Complaint,
    ComplaintEvent,
    Incident,
    Match,
    Nonconformity,
    OutboxItem,
    SampleRun,
    SurveyInvitation,
)
from core.timeutil import utcnow

MAX_CYCLES = 5


def demo_config(workdir: Path, incidents: int | None) -> AppConfig:
    env = {**os.environ, "QLOOP_DATABASE_URL": f"sqlite:///{workdir / 'qloop.db'}"}
    cfg = load_config(config.path("sandbox.yaml"), env=env)
    sources = cfg.sources
    if incidents is not None:
        sources = {
            n: dataclasses.replace(s, options={**s.options, "incidents": incidents})
            for n, s in cfg.sources.items()
        }
    return dataclasses.replace(cfg, state_dir=workdir / "state", sources=sources)


def _pct(r: Ratio) -> str:
    rate = r.rate
    return f"{r.numerator}/{r.denominator}" + (f" = {rate:.1%}" if rate is not None else "")


def print_indicators(ind: MonthlyIndicators) -> None:
    print(f"\nIndicators for {ind.month} (by resolution month, policy calendar zone)")
    lines = [
        ("resolved incidents", str(ind.resolved)),
        ("callbacks untracked", f"{ind.untracked} (due before tracking_from: not contacted)"),
        ("callback coverage", _pct(ind.callback_coverage)),
        ("callback on time", _pct(ind.callback_on_time)),
        ("confirmed resolution", _pct(ind.confirmed_resolution)),
        (
            "CSAT, callback (4–5)",
            _pct(ind.csat["callback"]) + f"   mean {ind.mean_score['callback'] or '-'}",
        ),
        (
            "CSAT, survey (4–5)",
            _pct(ind.csat["survey"]) + f"   mean {ind.mean_score['survey'] or '-'}",
        ),
        ("response compliance", _pct(ind.response)),
        ("resolution compliance", _pct(ind.resolution)),
    ]
    lines += [(f"  resolution {p}", _pct(r)) for p, r in ind.resolution_by_priority.items()]
    for label, value in lines:
        print(f"  {label:<26} {value}")
    print(
        f"\nNonconformities of the month's incidents: {ind.nonconformities_total} "
        f"({ind.nonconformities_closed} closed, "
        f"{ind.nonconformities_open_past_deadline} open past deadline)"
    )
    for rule, sev in sorted(ind.nonconformities.items()):
        print(f"  {rule:<22} major {sev.get('major', 0):>4}   minor {sev.get('minor', 0):>4}")


def _counts(rt: Runtime) -> dict[str, Any]:
    with rt.db.session() as s:
        return {
            "outbox": dict(
                s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
            ),
            "review": s.scalar(select(func.count()).where(Match.status == "review")),
            "not_surveyable": s.scalar(
                select(func.count()).where(SurveyInvitation.state == "not_surveyable")
            ),
            # per month, totals across its first draw and its top-ups
            "samples": list(
                s.execute(
                    select(
                        SampleRun.month,
                        func.sum(SampleRun.population),
                        func.sum(SampleRun.picked),
                    )
                    .group_by(SampleRun.month)
                    .order_by(SampleRun.month)
                ).all()
            ),
            "tickets": dict(
                s.execute(
                    select(Nonconformity.state, func.count()).group_by(Nonconformity.state)
                ).all()
            ),
        }


def run_campaign_demo(cfg: AppConfig, name: str, start: datetime, out: Path) -> None:
    """One survey campaign end to end on simulated days: plan, launch, remind, collect, report.

    A runtime of its own with a clock the demo moves on (the sandbox
    customers answer days after their invitation or a reminder).
    """
    clock = _Clock(start)
    rt = open_runtime(cfg, clock=clock)
    try:
        print(f"\nSurvey campaign {name} (simulated days from now):")
        print(textwrap.indent(plan_text(plan_campaign(rt, name, actor="demo")), "  "))
        done = launch_campaign(rt, name, actor="demo")
        print(f"  day 0: {done.enqueued} invitation(s) sent: {dict(done.push.counts)}")
        clock.now += timedelta(days=4)
        print(f"  day 4: {collect_answers(rt, name).responses} answer(s) collected")
        clock.now += timedelta(days=4)
        got = collect_answers(rt, name).responses
        first = send_reminders(rt, name, actor="demo")
        print(f"  day 8: {got} more answer(s); {first.enqueued} reminder(s) to the others")
        clock.now += timedelta(days=8)
        got = collect_answers(rt, name).responses
        second = send_reminders(rt, name, actor="demo")
        print(f"  day 16: {got} more answer(s); {second.enqueued} second reminder(s)")
        clock.now += timedelta(days=4)
        print(f"  day 20: {collect_answers(rt, name).responses} more answer(s) collected")
        print(textwrap.indent(status_text(campaign_status(rt, name, refresh=False)), "  "))
        with rt.db.session() as s:
            results = campaign_results(s, name)
        written = write_files(
            out,
            [
                (
                    f"qloop-campaign-{name}-zh-CN.{f}",
                    iter([render_results(results, f, "zh-CN", cfg.timezone)]),
                )
                for f in ("html", "pdf")
            ],
        )
        print("  results report (zh-CN, comments masked):")
        for path in written:
            print(f"    {path}")
    finally:
        rt.close()


@dataclasses.dataclass
class _Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def _story(rt: Runtime) -> tuple[Complaint, Incident, list[ComplaintEvent]] | None:
    """The complaint to tell: one the ITSM flagged that went furthest, else any."""
    order = {state.value: n for n, state in enumerate(ComplaintState)}
    with rt.db.session() as s:
        rows = s.execute(select(Complaint, Incident).join(Incident)).all()
        if not rows:
            return None
        c, inc = max(
            rows,
            key=lambda r: (
                order[r[0].state],
                r[0].origin == "source",
                r[0].follow_up_outcome.get("planned") is not False,
                -r[0].id,
            ),
        )
        events = list(
            s.scalars(
                select(ComplaintEvent)
                .where(ComplaintEvent.complaint_id == c.id)
                .order_by(ComplaintEvent.revision)
            )
        )
        return c, inc, events


FOLLOW_UP_JUMP = timedelta(days=2)
"""How far the demo moves its clock on for customers to answer the follow-up calls."""


def answer_follow_ups(cfg: AppConfig) -> None:
    """Run the loop two days later: the follow-up calls of complaints closed now get answered.

    Complaint tickets close as the demo runs (today), so their follow-up calls
    are due after it; a second runtime on a clock moved on by
    :data:`FOLLOW_UP_JUMP` collects the sandbox customers' answers.
    """
    later = open_runtime(cfg, clock=lambda: utcnow() + FOLLOW_UP_JUMP)
    try:
        print(f"\nTwo days later (demo clock +{FOLLOW_UP_JUMP.days}d): complaints' follow-up calls")
        for _ in range(2):
            summary = run_once(later)
            follow = [r for r, _ in summary.steps if r.step == "complaints follow"]
            print(f"  {follow[0] if follow else 'complaints: not configured'}")
    finally:
        later.close()


def print_complaints(rt: Runtime, month: str, out: Path, cfg: AppConfig) -> None:
    """One complaint from flag to follow-up call, and the month's complaint report."""
    if rt.config.complaints is None:
        return
    answer_follow_ups(cfg)
    story = _story(rt)
    if story is None:
        print("\nComplaints: none this month")
        return
    c, inc, events = story
    tz = ZoneInfo(rt.config.timezone)
    print(f"\nOne complaint, {inc.key} ({c.detail}):")
    for e in events:
        print(f"  {e.at.astimezone(tz):%Y-%m-%d %H:%M}  {e.kind:<18} {e.reason}")
    if c.root_cause:
        print(f"  root cause: {c.root_cause}\n  rectification: {c.rectification}")
    with rt.db.session() as s:
        doc = complaint_document(s, month, rt.config.timezone, as_of=whole_second(rt.now()))
    counts = doc.report.counts
    written = write_files(
        out,
        [
            (f"{doc.basename}.{f}", iter([render_complaints(doc, f, "zh-CN")]))
            for f in ("html", "pdf")
        ],
    )
    print(
        f"Complaint report (zh-CN): {counts['total']} complaint(s), "
        f"{counts['state.followed_up']} followed up, {counts['escalated']} escalated"
    )
    for path in written:
        print(f"  {path}")


def run_demo(workdir: Path, incidents: int | None = None) -> int:
    if incidents is not None and incidents < 1:
        msg = f"the demo needs at least 1 incident, got {incidents}"
        raise InputError(msg)
    if workdir.exists() and not workdir.is_dir():
        msg = f"{workdir} is not a folder"
        raise InputError(msg)
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / "qloop.db").exists():
        msg = f"{workdir} is not empty and holds no earlier demo; give an empty or new --dir"
        raise InputError(msg)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    cfg = demo_config(workdir, incidents)
    source = next(iter(cfg.sources.values()))
    month = str(source.options["month"])
    print(
        f"qloop demo: sandbox month {month}, {source.options.get('incidents', 400)} incidents, "
        f"working folder {workdir}/"
    )
    rt = open_runtime(cfg)
    rt.on_progress = console.live_progress
    try:
        started = time.perf_counter()
        for cycle in range(1, MAX_CYCLES + 1):
            print(f"\nloop {cycle}", flush=True)
            summary = run_once(rt, progress=console._progress)
            quiet = (
                summary.sent() == 0
                and summary.total("created") == 0
                and summary.total("evaluated") == 0
            )
            if quiet:
                print("  (nothing new: the loop has converged)")
                break
        elapsed = time.perf_counter() - started
        with rt.db.session() as s:
            pol = next(iter(rt.policies.values()))
            ind = period_indicators(
                s, policy=pol.name, version=pol.version, month=month, now=rt.now(), rules=pol
            )
        print_indicators(ind)
        counts = _counts(rt)
        print(
            "\nSurvey samples: "
            + ", ".join(f"{m}: {picked} of {pop}" for m, pop, picked in counts["samples"])
            + f"; not surveyable: {counts['not_surveyable']}"
        )
        print(f"Tickets in the sandbox ITSM: {counts['tickets']}")
        print(
            f"Outbox: {counts['outbox']}; review queue: {counts['review']} answer(s) "
            f"(see `qloop review list`)"
        )
        out = workdir / "exports"
        files = [p for fmt in ("csv", "xlsx", "jsonl") for p in console.export(rt, month, fmt, out)]
        print("\nExports (contact details masked):")
        for path in files:
            print(f"  {path}")
        report = build_report(rt, month, as_of=whole_second(rt.now()))
        written = write_files(
            workdir / "reports",
            [
                (f"{report.basename}.{f}", iter([render_report(report, f, "zh-CN")]))
                for f in ("html", "pdf")
            ],
        )
        print("\nMonthly quality report (zh-CN):")
        for path in written:
            print(f"  {path}")
        if cfg.campaigns:
            run_campaign_demo(cfg, next(iter(cfg.campaigns)), rt.now(), workdir / "reports")
        print_complaints(rt, month, workdir / "reports", cfg)
        home = workdir.resolve()
        serve_cfg, serve_env = write_serve_files(workdir)
        print(
            f"\nDone in {elapsed:.1f}s. Go on with this month yourself:\n"
            f"  export QLOOP_DATABASE_URL=sqlite:///{home / 'qloop.db'} "
            f"QLOOP_STATE_DIR={home / 'state'}\n"
            f"  .venv/bin/qloop review list -c {config.path('sandbox.yaml')}"
        )
        print(
            "\nQA web page of this month (the tokens are in serve.env, one per role):\n"
            f"  set -a; . {serve_env}; set +a\n"
            f"  .venv/bin/qloop serve -c {serve_cfg}\n"
            f"  then open http://127.0.0.1:8000/qa and sign in with $QLOOP_DEMO_QA_TOKEN"
        )
    finally:
        rt.close()
    return 0
