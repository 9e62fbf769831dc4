"""The monthly report's delivery job: on the first working day of a month, last month's report.

The job runs on the ``deliver`` schedule (daily by default). Once the first
working day of the month (the calendar of the first policy, by name) has
come, it sends the previous month's report to every entry of
``reports.send``: by e-mail (SMTP, STARTTLS and login when configured) or
as a POST signed with Standard Webhooks headers. Each sending is recorded
(:class:`~core.store.models.SentReport`: who, when, recipient, format,
language, period, ``as_of``, SHA-256 of the bytes sent).

Nothing is sent twice: the row of (period, recipient, via, format, lang) is
claimed before sending (a unique key; a concurrent job loses the insert)
and marked ``sent`` after. A failed send deletes the claim, so the next run
tries again; a claim left ``sending`` by a killed process is tried again
after :data:`STALE_CLAIM`, with the same ``Message-ID`` or ``webhook-id``
so the receiver can drop the duplicate.

The report is evaluated as of the first instant of the month it is sent
in (the policy calendar's zone): every recipient gets the same bytes,
whenever the job runs. The document is the monthly quality report of
every policy (:mod:`core.report`) in the entry's format (default PDF) and
language (default: the report's, zh-CN for a CN calendar).
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import httpx
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from connectors.webhook.signing import decode_secret, signed_headers, webhook_id_for
from core.calendar import BusinessCalendar
from core.conf.model import ReportRecipient, SmtpConfig
from core.errors import ConfigError, RetriableError
from core.loop.common import StepResult, audit
from core.report import build_report, render_report
from core.report.build import default_lang
from core.report.model import MEDIA_TYPES
from core.runtime import Runtime
from core.stamps import Stamps
from core.store.models import SentReport
from core.timeutil import month_bounds, previous_month

log = logging.getLogger("qloop.delivery")
ACTOR = "job:deliver"
STALE_CLAIM = timedelta(hours=1)


@dataclass(frozen=True)
class Document:
    """The bytes that go out, with their file name and media type."""

    name: str
    data: bytes
    media: tuple[str, str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def first_working_day(cal: BusinessCalendar, month: str) -> date:
    """The first working day of ``month`` on ``cal``."""
    day = date.fromisoformat(f"{month}-01")
    while not cal.is_working_day(day):
        day += timedelta(days=1)
    return day


def due_period(rt: Runtime, now: datetime) -> tuple[str, datetime] | None:
    """(the month to send, the report's ``as_of``) once this month's first working day has come."""
    cal = rt.policy(sorted(rt.policies)[0]).calendar
    today = now.astimezone(cal.tz).date()
    month = f"{today.year:04d}-{today.month:02d}"
    if today < first_working_day(cal, month):
        return None
    return previous_month(month), month_bounds(month, cal.tz)[0]


def build_document(rt: Runtime, period: str, as_of: datetime, fmt: str, lang: str) -> Document:
    """The month's quality report (every policy, and all together) as ``fmt`` in ``lang``."""
    report = build_report(rt, period, as_of=as_of)
    data = render_report(report, fmt, lang)
    main, _, sub = MEDIA_TYPES[fmt].split(";")[0].partition("/")
    return Document(f"{report.basename}.{fmt}", data, (main, sub))


def _recipients(entry: ReportRecipient) -> list[str]:
    return list(entry.to)


def _subject(period: str) -> str:
    return f"质量月报 / Monthly quality report {period}"


def send_email(
    smtp: SmtpConfig, to: str, period: str, doc: Document, message_id: str, at: datetime
) -> None:
    """One message to ``to`` with ``doc`` attached (STARTTLS and login as configured)."""
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    msg["Subject"] = _subject(period)
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = message_id
    msg.set_content(
        f"The monthly quality report of {period} is attached ({doc.name}, "
        f"SHA-256 {doc.sha256}).\n\n本月质量月报见附件。\n"
    )
    msg.add_attachment(doc.data, maintype=doc.media[0], subtype=doc.media[1], filename=doc.name)
    smtp_send(smtp, msg)


def smtp_send(smtp: SmtpConfig, msg: EmailMessage) -> None:
    """Send ``msg`` through ``smtp`` (STARTTLS and login as configured); retriable on failure."""
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context(cafile=smtp.cafile))
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        text = f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}"
        raise RetriableError(text) from None


def send_webhook(
    entry: ReportRecipient, url: str, period: str, doc: Document, webhook_id: str, at: datetime
) -> None:
    """A POST of the report (base64 in JSON), signed with the entry's secret."""
    import base64

    if not entry.secret:
        msg = "reports.send: via webhook needs a secret (whsec_…)"
        raise ConfigError(msg, field="reports.send.secret")
    body = json.dumps(
        {
            "type": "report.monthly",
            "period": period,
            "name": doc.name,
            "media_type": "/".join(doc.media),
            "sha256": doc.sha256,
            "content_base64": base64.b64encode(doc.data).decode("ascii"),
        },
        sort_keys=True,
    ).encode("utf-8")
    post_signed(entry.secret, "reports.send.secret", url, body, webhook_id, at)


def post_signed(
    secret: str, where: str, url: str, body: bytes, webhook_id: str, at: datetime
) -> None:
    """POST JSON ``body`` to ``url`` with Standard Webhooks headers signed by ``secret``.

    Raises:
        ConfigError: ``secret`` is not a ``whsec_`` secret (naming ``where``).
        RetriableError: the receiver did not answer 2xx.
    """
    key = decode_secret(secret, where)
    headers = {"content-type": "application/json", **signed_headers([key], webhook_id, at, body)}
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        text = f"webhook {url}: {type(exc).__name__}"
        raise RetriableError(text) from None
    if response.status_code >= 300:
        text = f"webhook {url}: HTTP {response.status_code}"
        raise RetriableError(text)


def _claim(rt: Runtime, key: dict[str, str], as_of: datetime, actor: str) -> int | None:
    """The id of the claimed row, or None when already sent (or being sent)."""
    now = rt.now()
    with rt.db.session() as s:
        row = s.scalars(select(SentReport).filter_by(**key)).one_or_none()
        if row is not None:
            if row.state == "sending" and now - row.claimed_at > STALE_CLAIM:
                row.claimed_at = now  # cut off mid-send: try again, same message id
                return row.id
            return None
    try:
        with rt.db.session() as s:
            row = SentReport(**key, as_of=as_of, actor=actor, state="sending", claimed_at=now)
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:  # another job claimed it first
        return None


def deliver_reports(
    rt: Runtime,
    *,
    actor: str = ACTOR,
    document: Callable[[Runtime, str, datetime, str, str], Document] = build_document,
) -> StepResult:
    """Send last month's report to every configured recipient not yet served."""
    result = StepResult("deliver")
    conf = rt.config.reports
    due = due_period(rt, rt.now()) if conf.send else None
    if due is None:
        return result
    period, as_of = due
    docs: dict[tuple[str, str], Document] = {}
    for entry in conf.send:
        lang = entry.lang or default_lang(rt, sorted(rt.policies))
        for to in _recipients(entry):
            key = {
                "period": period,
                "recipient": to,
                "via": entry.via,
                "format": entry.format,
                "lang": lang,
            }
            row_id = _claim(rt, key, as_of, actor)
            if row_id is None:
                result.counts["already_sent"] += 1
                continue
            ident = webhook_id_for(json.dumps(key, sort_keys=True))
            try:
                doc = docs.get((entry.format, lang))
                if doc is None:
                    doc = docs[(entry.format, lang)] = document(
                        rt, period, as_of, entry.format, lang
                    )
                if entry.via == "email":
                    if conf.smtp is None:
                        msg = "reports.send: via email needs reports.smtp"
                        raise ConfigError(msg, field="reports.smtp")
                    send_email(conf.smtp, to, period, doc, f"<{ident}@qloop>", rt.now())
                else:
                    send_webhook(entry, to, period, doc, ident, rt.now())
            except Exception:
                with rt.db.session() as s:
                    s.execute(delete(SentReport).where(SentReport.id == row_id))
                result.counts["failed"] += 1
                result.errors.append(f"{period} {entry.via} to {to}: not sent")
                log.exception(
                    "deliver: %s %s to %s failed; retried on the next run", period, entry.via, to
                )
                continue
            with rt.db.session() as s:
                row = s.get(SentReport, row_id)
                assert row is not None
                row.state, row.sent_at = "sent", rt.now()
                row.attachment, row.sha256, row.size = doc.name, doc.sha256, len(doc.data)
                audit(
                    s,
                    rt,
                    "report.send",
                    "period",
                    period,
                    actor=actor,
                    recipient=to,
                    via=entry.via,
                    sha256=doc.sha256,
                    qloop=Stamps.current().qloop,
                )
            result.counts["sent"] += 1
    return result
