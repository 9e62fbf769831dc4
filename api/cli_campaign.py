"""``qloop campaign plan|launch|status|remind|collect|top-up|report|close NAME``, ``opt-out``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from core.campaign import (
    campaign_status,
    close_campaign,
    collect_answers,
    launch_campaign,
    plan_campaign,
    plan_text,
    send_reminders,
    status_text,
    top_up,
)
from core.campaign.plan import campaign_config
from core.campaign.results import campaign_results
from core.conf import load_config
from core.errors import InputError
from core.export.month import cli_actor
from core.loop.common import audit
from core.privacy import email_key, phone_key
from core.report.build import default_lang
from core.report.campaign import render_results
from core.runtime import Runtime, open_runtime
from core.store.models import ContactOptOut


def _runtime(args: argparse.Namespace) -> Runtime:
    path = Path(args.config or os.environ.get("QLOOP_CONFIG") or "qloop.yaml")
    return open_runtime(load_config(path), existing=True)


def cmd_campaign(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    try:
        if args.action == "plan":
            print(plan_text(plan_campaign(rt, args.name, actor=cli_actor())))
        elif args.action == "launch":
            done = launch_campaign(rt, args.name, actor=cli_actor())
            counts = ", ".join(f"{k} {v}" for k, v in sorted(done.push.counts.items())) or "none"
            print(
                f"campaign {args.name}: {done.enqueued} invitation(s) put in the outbox "
                f"({done.already} there already); sent now: {counts}"
            )
        elif args.action == "status":
            print(status_text(campaign_status(rt, args.name, refresh=not args.offline)))
        elif args.action == "remind":
            sent = send_reminders(rt, args.name, actor=cli_actor())
            counts = ", ".join(f"{k} {v}" for k, v in sorted(sent.push.counts.items())) or "none"
            print(
                f"campaign {args.name}: {sent.enqueued} reminder(s) due put in the outbox "
                f"({sent.already} there already); sent now: {counts}"
            )
        elif args.action == "collect":
            got = collect_answers(rt, args.name)
            print(
                f"campaign {args.name}: {got.responses} new response(s), {got.respondents} new "
                f"respondent(s); {got.unmatched} response(s) of no member left out"
            )
        elif args.action == "top-up":
            more = top_up(rt, args.name, args.stratum, args.count, actor=cli_actor())
            for stratum, n in sorted(more.added.items()):
                print(f"{stratum}: {n} more invited")
            if not more.added:
                print(f"campaign {args.name}: no stratum needs a top-up")
        elif args.action == "report":
            _report(rt, args)
        elif args.action == "close":
            cancelled = close_campaign(rt, args.name, actor=cli_actor())
            print(f"campaign {args.name} closed; {cancelled} unsent invitation(s) cancelled")
    finally:
        rt.close()
    return 0


def _report(rt: Runtime, args: argparse.Namespace) -> None:
    campaign_config(rt, args.name)  # an unknown name lists the known ones
    lang = args.lang or default_lang(rt, list(rt.config.policies))
    with rt.db.session() as s:
        results = campaign_results(s, args.name, masked=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in args.format:
        path = out / f"qloop-campaign-{results.name}-{lang}.{fmt}"
        path.write_bytes(render_results(results, fmt, lang, rt.config.timezone))
        print(path)


def contact_key(text: str) -> str:
    """``a@b.c`` → ``email:a@b.c``; a phone number → ``phone:<digits>``."""
    value = text.strip()
    key = f"email:{email_key(value)}" if "@" in value else None
    if key is None:
        digits = phone_key(value)
        key = f"phone:{digits}" if digits else None
    if key is None:
        msg = f"opt-out: {text!r} is neither an e-mail address nor a phone number"
        raise InputError(msg)
    return key


def cmd_opt_out(args: argparse.Namespace) -> int:
    key = contact_key(args.contact)
    rt = _runtime(args)
    try:
        with rt.db.session() as s:
            if s.scalar(select(ContactOptOut.id).where(ContactOptOut.contact_key == key)):
                print(f"{key}: already opted out")
                return 0
            row = ContactOptOut(
                contact_key=key, reason=args.reason, actor=cli_actor(), created_at=rt.now()
            )
            s.add(row)
            s.flush()
            audit(s, rt, "contact.opt_out", "contact_opt_out", row.id, cli_actor())
        print(f"{key}: opted out of every future campaign")
    finally:
        rt.close()
    return 0


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``qloop campaign`` to the ``qloop`` command."""
    text = (
        "company-level satisfaction survey campaigns (R3): plan, launch, status, remind, "
        "collect, top-up, report, close"
    )
    p = sub.add_parser("campaign", help=text, description=text)
    actions = p.add_subparsers(
        dest="action",
        required=True,
        metavar="ACTION",
        help="plan, launch, status, remind, collect, top-up, report, close (a campaign by "
        "name) or opt-out (a person)",
    )
    helps = {
        "plan": "build the frame and draw the stratified sample; print the coverage per "
        "stratum; nothing is sent (again before launch: replaces the plan)",
        "launch": "invite the planned people through the outbox, each once (safe to repeat)",
        "status": "response rate and coverage per stratum, flagging strata below target",
        "remind": "send the reminders due now to invitees who have not answered (each round "
        "once; the campaigns job does it on schedule)",
        "collect": "store the new responses to the campaign's questionnaire (once each)",
        "top-up": "invite more people of the strata below target (or --stratum), in the "
        "plan's seeded order",
        "report": "write the results report: scores per item and stratum with 95%% "
        "confidence intervals, response per stratum, comments (masked)",
        "close": "close the campaign: unsent invitations and reminders are cancelled",
    }
    for action, help_text in helps.items():
        a = with_config(actions.add_parser(action, help=help_text, description=help_text))
        a.add_argument("name", help="the campaign's name under campaigns: in the configuration")
        if action == "top-up":
            a.add_argument("--stratum", default=None, help="only this stratum (as status shows)")
            a.add_argument(
                "--count",
                type=int,
                default=None,
                help="how many more (default: the fewest that reach the target if they all answer)",
            )
        if action == "report":
            a.add_argument(
                "--format",
                nargs="+",
                default=["html"],
                choices=["html", "pdf", "xlsx", "json"],
                help="one or more formats (default html)",
            )
            a.add_argument(
                "--lang",
                choices=["zh-CN", "en"],
                default=None,
                help="default: zh-CN for a CN calendar, else en",
            )
            a.add_argument("--out", default=".", help="directory to write into (created)")
        if action == "status":
            a.add_argument(
                "--offline",
                action="store_true",
                help="do not ask the channel for new answers; report what is stored",
            )
        a.set_defaults(func=cmd_campaign)
    o = with_config(
        actions.add_parser(
            "opt-out",
            help="record that a person (e-mail or phone) is never surveyed by a campaign again",
        )
    )
    o.add_argument("contact", help="the person's e-mail address or phone number")
    o.add_argument("--reason", default=None, help="why (kept with the record)")
    o.set_defaults(func=cmd_opt_out)
