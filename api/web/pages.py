"""The QA web page's routes under ``/qa``: sign-in, month, nonconformities, review, downloads.

Server-rendered (Jinja2, autoescaped), no JavaScript. Every page needs a
session (:mod:`api.web.session`); without one it sends the browser to the
sign-in form. The data come from the same functions the API's routes use,
with the signed-in token's role: the same masking, the same checks, the
same audit entries (``via: web`` on downloads).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from api.auth import Permission, Principal
from api.problems import ApiError
from api.routes.common import MAX_ID, MONTH_PATTERN, record_audit
from api.routes.exports import export_response
from api.routes.nonconformities import nc_out, nc_query
from api.routes.reports import MonthlyReport, monthly_report
from api.routes.review import list_review, settle
from api.token_use import TokenUse
from api.web import documents, i18n
from api.web.render import Renderer
from api.web.session import COOKIE, LIFETIME, PRE_COOKIE, SessionCodec, WebSession, same_value
from core.errors import InputError
from core.report import FORMATS as REPORT_FORMATS
from core.runtime import Runtime
from core.states import NcState, Rule, Severity
from core.store.models import ComplianceRecord, Incident, Nonconformity

router = APIRouter(prefix="/qa", include_in_schema=False)

LANG_COOKIE = "qloop_lang"
NC_PAGE = 100
REVIEW_PAGE = 100
FORM_LIMIT = 16_384
_MONTH = re.compile(MONTH_PATTERN)
EXPORT_FORMATS = ("csv", "xlsx", "jsonl")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Every page: nothing but our own stylesheet loads, no script runs, no framing, no caching."""


class SignInFirst(Exception):
    """The request has no valid session: answered by a redirect to the sign-in form."""


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.web_sessions
    return codec


def _lang(request: Request) -> str:
    fallback: str = request.app.state.web_language
    return i18n.pick(request.cookies.get(LANG_COOKIE), fallback)


def _session(request: Request) -> WebSession:
    found = _codec(request).read(request.cookies.get(COOKIE), _rt(request).now())
    if found is None:
        raise SignInFirst
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _page(
    request: Request,
    template: str,
    session: WebSession | None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    renderer: Renderer = request.app.state.web_renderer
    html = renderer.render(
        template,
        lang=_lang(request),
        session=session,
        path=request.url.path,
        query=request.url.query,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (the first value of each field)."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise ApiError(413, f"the form is larger than {FORM_LIMIT} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "the form is not UTF-8") from None
    form = {k: v[0] for k, v in fields.items()}
    bad = sorted(k for k, v in form.items() if "\x00" in k or "\x00" in v)
    if bad:
        raise ApiError(400, f"form field {bad[0]!r}: the NUL character is not allowed")
    return form


def _same_origin(request: Request) -> bool:
    """A POST from our own pages: its Origin and Sec-Fetch-Site (when sent) say this site.

    (The pages' ``Referrer-Policy: same-origin`` lets browsers send the Origin of
    their own forms; ``no-referrer`` would make it ``null``.)
    """
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    here = urlsplit(str(request.base_url))
    there = urlsplit(origin)
    return (there.scheme, there.netloc) == (here.scheme, here.netloc)


def _checked_post(request: Request, session: WebSession, form: Mapping[str, str]) -> bool:
    return _same_origin(request) and same_value(form.get("csrf"), session.csrf)


def _latest_month(rt: Runtime) -> str:
    """The newest month with compliance records, else the current one (display zone)."""
    with rt.db.sessions() as s:
        found = s.scalar(select(func.max(ComplianceRecord.month)))
    if found:
        return str(found)
    return rt.now().astimezone(ZoneInfo(rt.config.timezone)).strftime("%Y-%m")


def _month(request: Request, given: str | None) -> tuple[str, str | None]:
    """The month asked for (valid) and an error to show, falling back to the latest."""
    if given and _MONTH.match(given):
        return given, None
    return _latest_month(_rt(request)), given or None


# ---------------------------------------------------------------- sign-in / out / language


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request) -> Response:
    """The sign-in form; its CSRF value rides in a short-lived cookie."""
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    response = _page(request, "signin.html", None, csrf=pre, error=None)
    _set_pre(request, response, pre)
    return response


def _set_pre(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        PRE_COOKIE,
        value,
        max_age=3600,
        path="/qa",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request) -> Response:
    """Exchange a token for a session cookie (the token is never stored)."""
    form = await _form(request)
    pre = request.cookies.get(PRE_COOKIE)
    if not (_same_origin(request) and pre and same_value(form.get("csrf"), pre)):
        fresh = secrets.token_urlsafe(24)
        refused = _page(request, "signin.html", None, 400, csrf=fresh, error="bad_form")
        _set_pre(request, refused, fresh)
        return refused
    rt = _rt(request)
    made = _codec(request).sign_in(form.get("token", "").strip(), rt.now())
    if made is None:
        return _page(request, "signin.html", None, 401, csrf=pre, error="bad_token")
    session, cookie = made
    principal = session.principal
    await run_in_threadpool(_record_sign_in, request, rt, principal)
    response = _redirect("/qa")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(LIFETIME.total_seconds()),
        path="/qa",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(PRE_COOKIE, path="/qa")
    return response


def _record_sign_in(request: Request, rt: Runtime, principal: Principal) -> None:
    uses: TokenUse = request.app.state.token_use
    uses.record(rt, principal.name, principal.role, request.method, request.url.path)
    with rt.db.session() as s:
        record_audit(
            s, rt, principal, "web.sign_in", "session", principal.name, role=principal.role
        )


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the session: refused from now on in this process, and the cookie cleared."""
    session = _session(request)
    form = await _form(request)
    if not _checked_post(request, session, form):
        return _page(request, "error.html", session, 400, error="bad_form")
    _codec(request).sign_out(session, _rt(request).now())
    response = _redirect("/qa/signin")
    response.delete_cookie(COOKIE, path="/qa")
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/qa") -> Response:
    """Set the page's language (a cookie) and go back to ``next`` (a page of /qa)."""
    target = next if next.startswith("/qa") and "//" not in next and "\\" not in next else "/qa"
    response = _redirect(target)
    if code in i18n.LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            code,
            max_age=365 * 86400,
            path="/qa",
            samesite="strict",
            secure=_secure(request),
        )
    return response


# ---------------------------------------------------------------- pages


@router.get("", response_class=HTMLResponse)
def month_page(request: Request, month: str | None = None) -> Response:
    """The month's indicators per policy, and their trend over 12 months."""
    session = _session(request)
    rt = _rt(request)
    period, bad = _month(request, month)
    with rt.db.sessions() as s:
        report = monthly_report(period, rt, s, session.principal)
    assert isinstance(report, MonthlyReport)  # no format asked: the indicators
    charts = documents.trend_charts(rt, period, _lang(request))
    return _page(
        request,
        "month.html",
        session,
        month=period,
        bad_month=bad,
        report=report,
        charts=charts,
    )


@router.get("/nonconformities", response_class=HTMLResponse)
def nc_page(
    request: Request,
    month: str | None = None,
    rule: str = "",
    severity: str = "",
    state: str = "",
    overdue: str = "",
    after: int = 0,
) -> Response:
    """The month's nonconformities, filtered, with links to their tickets."""
    session = _session(request)
    rt = _rt(request)
    period, bad = _month(request, month)
    filters = {
        "rule": rule if rule in set(Rule) else "",
        "severity": severity if severity in set(Severity) else "",
        "state": state if state in set(NcState) else "",
        "overdue": overdue if overdue in ("yes", "no") else "",
    }
    query = nc_query(
        rule=filters["rule"] or None,
        severity=filters["severity"] or None,
        state=filters["state"] or None,
        month=period,
        overdue={"yes": True, "no": False}.get(filters["overdue"]),
    )
    tz = ZoneInfo(rt.config.timezone)
    with rt.db.sessions() as s:
        rows = list(
            s.scalars(
                query.where(Nonconformity.id > min(max(after, 0), MAX_ID))
                .order_by(Nonconformity.id)
                .limit(NC_PAGE + 1)
            )
        )
        more = len(rows) > NC_PAGE
        rows = rows[:NC_PAGE]
        found = s.execute(
            select(Incident.id, Incident.key).where(Incident.id.in_({n.incident_id for n in rows}))
        )
        keys = {inc_id: key for inc_id, key in found}
        items = [nc_out(n, session.principal) for n in rows]
    next_url = (
        f"/qa/nonconformities?{urlencode({'month': period, **filters, 'after': rows[-1].id})}"
        if more
        else None
    )
    return _page(
        request,
        "nonconformities.html",
        session,
        month=period,
        bad_month=bad,
        filters=filters,
        choices={"rule": list(Rule), "severity": list(Severity), "state": list(NcState)},
        items=items,
        keys=keys,
        tz=tz,
        next_url=next_url,
    )


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    month: str | None = None,
    settled: int | None = None,
    outcome: str = "",
    error: str = "",
) -> Response:
    """The review queue; operators and admins settle items here."""
    session = _session(request)
    rt = _rt(request)
    period, _ = _month(request, month)
    with rt.db.sessions() as s:
        queue = list_review(s, session.principal, REVIEW_PAGE, None)
    return _page(
        request,
        "review.html",
        session,
        month=period,
        items=queue.items,
        more=queue.next_cursor is not None,
        may_settle=session.principal.can(Permission.REVIEW),
        settled=settled,
        outcome=outcome if outcome in ("matched", "dismissed") else "",
        error=error[:300],
        tz=ZoneInfo(rt.config.timezone),
    )


@router.post("/review/{item_id}")
async def settle_item(request: Request, item_id: int) -> Response:
    """Tie a review item to an incident, or dismiss it (audited, as the API does)."""
    session = _session(request)
    form = await _form(request)
    if not _checked_post(request, session, form):
        return _page(request, "error.html", session, 400, error="bad_form")
    if not session.principal.can(Permission.REVIEW):
        return _page(request, "error.html", session, 403, error="forbidden")
    if not 1 <= item_id <= MAX_ID:
        raise ApiError(404, f"review item {item_id} does not exist")
    action = form.get("action")
    month = form.get("month", "")
    back = {"month": month} if _MONTH.match(month) else {}
    note = form.get("note", "").strip()[:2000] or None
    incident_id: int | None = None
    if action == "match":
        text = form.get("incident_id", "").strip()
        if not text.isdigit() or not 1 <= int(text) <= 2**31 - 1:
            return _redirect(f"/qa/review?{urlencode({**back, 'error': 'need_incident'})}")
        incident_id = int(text)
    elif action != "dismiss":
        return _page(request, "error.html", session, 400, error="bad_form")
    try:
        done = await run_in_threadpool(
            settle, _rt(request), item_id, incident_id, session.principal, note
        )
    except ApiError as exc:
        return _redirect(f"/qa/review?{urlencode({**back, 'error': exc.detail})}")
    return _redirect(
        f"/qa/review?{urlencode({**back, 'settled': done.id, 'outcome': done.status})}"
    )


@router.get("/downloads", response_class=HTMLResponse)
def downloads_page(request: Request, month: str | None = None) -> Response:
    """Links to the month's exports (and reports), for the roles that may download."""
    session = _session(request)
    rt = _rt(request)
    period, bad = _month(request, month)
    return _page(
        request,
        "downloads.html",
        session,
        month=period,
        bad_month=bad,
        policies=sorted(rt.policies),
        formats=EXPORT_FORMATS,
        report_formats=REPORT_FORMATS,
        may_export=session.principal.can(Permission.EXPORT),
    )


@router.get("/exports/{period}")
def download_export(
    request: Request, period: str, format: str = "csv", policy: str | None = None
) -> Response:
    """The month's export, streamed and audit-logged (``via: web``), as the API sends it."""
    session = _session(request)
    if not session.principal.can(Permission.EXPORT):
        return _page(request, "error.html", session, 403, error="forbidden")
    if not _MONTH.match(period) or format not in EXPORT_FORMATS:
        raise ApiError(404, f"no export {period!r} in format {format!r}")
    return export_response(
        _rt(request), session.principal, period, format, policy=policy, as_of=None, via="web"
    )


@router.get("/reports/{period}")
def download_report(request: Request, period: str, format: str = "pdf") -> Response:
    """The month's quality report as of now, in the page's language (audited via web)."""
    session = _session(request)
    if not session.principal.can(Permission.EXPORT):
        return _page(request, "error.html", session, 403, error="forbidden")
    if not _MONTH.match(period) or format not in REPORT_FORMATS:
        raise ApiError(404, f"no report {period!r} in format {format!r}")
    return documents.report_file(_rt(request), session.principal, period, format, _lang(request))


@router.get("/evidence")
def download_evidence(request: Request, start: str = "", end: str = "") -> Response:
    """The audit evidence pack of months ``start``..``end`` (a zip, streamed; audited)."""
    session = _session(request)
    if not session.principal.can(Permission.EXPORT):
        return _page(request, "error.html", session, 403, error="forbidden")
    try:
        return documents.evidence_file(_rt(request), session.principal, start, end)
    except InputError as exc:
        raise ApiError(422, str(exc)) from None


def signin_redirect(request: Request, exc: Exception) -> Response:
    """The answer to :class:`SignInFirst`: the sign-in form."""
    return _redirect("/qa/signin")
