"""The QA web page (/qa) through a browser-like client: sessions, data, writes, languages."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path

from sqlalchemy import select

from api.web import i18n
from core.store.models import Match, Nonconformity
from tests.api.conftest import TOKENS, Served, auth
from tests.web.conftest import (
    EMAIL,
    MOBILE_IN_TEXT,
    PHONE,
    audit_entries,
    browser,
    csrf_of,
    page_csrf,
    review_items,
    signed_in,
)

TEMPLATES = Path(__file__).parents[2] / "api" / "web" / "templates"


def _cookie_header(response: object) -> str:
    headers = response.headers  # type: ignore[attr-defined]
    return "; ".join(v for k, v in headers.multi_items() if k == "set-cookie" and "qloop_qa=" in v)


def test_pages_need_a_session_and_sign_in_takes_a_token(served: Served) -> None:
    client = browser(served)
    for path in (
        "/qa",
        "/qa/nonconformities",
        "/qa/review",
        "/qa/downloads",
        "/qa/exports/2026-10",
    ):
        r = client.get(path)
        assert (r.status_code, r.headers["location"]) == (303, "/qa/signin"), path
    form = client.get("/qa/signin")
    assert form.status_code == 200 and 'type="password"' in form.text
    assert "<script" not in form.text
    r = client.post("/qa/signin", data={"csrf": csrf_of(form.text), "token": TOKENS["qa-read"]})
    assert r.status_code == 303
    cookie = _cookie_header(r)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/qa" in cookie
    value = re.search(r"qloop_qa=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    payload = base64.urlsafe_b64decode(value.split(".")[0] + "==").decode()
    assert TOKENS["qa-read"] not in value and TOKENS["qa-read"] not in payload
    assert '"sub":"qa-read-user"' in payload
    page = client.get("/qa")
    assert page.status_code == 200 and "qa-read-user" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no script may run
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert [e.actor for e in audit_entries(served, "web.sign_in")] == ["qa-read-user"]


def test_sign_in_refuses_unknown_tokens_channel_tokens_and_forged_forms(served: Served) -> None:
    client = browser(served)
    csrf = csrf_of(client.get("/qa/signin").text)
    for token in ("not-a-token-0123456789", TOKENS["channel"]):
        r = client.post("/qa/signin", data={"csrf": csrf, "token": token})
        assert r.status_code == 401 and "qloop_qa=" not in _cookie_header(r)
    forged = client.post("/qa/signin", data={"csrf": "guessed", "token": TOKENS["admin"]})
    assert forged.status_code == 400 and "qloop_qa=" not in _cookie_header(forged)
    other_site = client.post(
        "/qa/signin",
        data={"csrf": csrf, "token": TOKENS["admin"]},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 400
    assert browser(served).post("/qa/signin", data={"token": TOKENS["admin"]}).status_code == 400
    assert audit_entries(served, "web.sign_in") == []


def test_a_tampered_cookie_or_a_signed_out_session_is_refused(served: Served) -> None:
    client = signed_in(served, "qa-read")
    value = client.cookies["qloop_qa"]
    body, sig = value.split(".")
    promoted = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(body + "==").replace(b"qa-read-user", b"admin-user")
    ).rstrip(b"=")
    thief = browser(served)
    thief.cookies.set("qloop_qa", f"{promoted.decode()}.{sig}", path="/qa")
    assert thief.get("/qa").status_code == 303
    r = client.post("/qa/signout", data={"csrf": page_csrf(client)})
    assert (r.status_code, r.headers["location"]) == (303, "/qa/signin")
    replay = browser(served)
    replay.cookies.set("qloop_qa", value, path="/qa")
    assert replay.get("/qa").status_code == 303
    # signing out needs the form's CSRF value
    other = signed_in(served, "qa-read")
    assert other.post("/qa/signout", data={"csrf": "x"}).status_code == 400
    assert other.get("/qa").status_code == 200


def test_the_month_shows_the_apis_indicators(served: Served) -> None:
    client = signed_in(served, "qa-read")
    api = served.client.get("/reports/2026-10", headers=auth("qa-read")).json()
    [policy] = api["policies"]
    ind = policy["indicators"]
    html = client.get("/qa", params={"month": "2026-10"}).text
    assert 'value="2026-10"' in html
    assert f'id="resolved-{policy["policy"]}">{ind["resolved"]}<' in html
    on_time = ind["callback_on_time"]
    row = f'{on_time["numerator"]}</td><td class="n">{on_time["denominator"]}</td>'
    assert row in html and f"{on_time['rate'] * 100:.1f}%" in html
    trend = html[html.index('id="trend"') :]
    assert trend.count("<svg") >= 6 and "<script" not in trend  # the report's trend charts
    assert "<title>" in trend and "2026-10" in trend
    bad = client.get("/qa", params={"month": "2026-13"}).text
    assert "2026-13" in bad and 'class="error"' in bad


def test_nonconformities_filter_and_link_their_tickets(served: Served) -> None:
    with served.rt.db.session() as s:
        ncs = list(s.scalars(select(Nonconformity)))
        assert ncs
        rule = ncs[0].rule
        for nc in ncs:
            nc.overdue = False
        ncs[0].overdue = True
        ncs[0].ticket_url = "https://itsm.example/browse/NC-1"
        ncs[0].ticket_ref = "NC-1"
        overdue_id = ncs[0].id
    client = signed_in(served, "qa-read")
    base = {"month": "2026-10"}
    html = client.get("/qa/nonconformities", params=base).text
    assert 'href="https://itsm.example/browse/NC-1"' in html
    shown_rules = set(re.findall(r'data-rule="([a-z_]+)"', html))
    assert len(shown_rules) >= 1
    only = client.get("/qa/nonconformities", params={**base, "rule": rule}).text
    assert set(re.findall(r'data-rule="([a-z_]+)"', only)) == {rule}
    late = client.get("/qa/nonconformities", params={**base, "overdue": "yes"}).text
    assert re.findall(r"<tr class=\"nc [a-z]+ overdue\"", late)
    assert re.findall(r"<tr class=\"nc[^\"]*\"[^>]*>\s*<td>(\d+)</td>", late) == [str(overdue_id)]
    api = served.client.get(
        "/nonconformities", params={"overdue": "true", "month": "2026-10"}, headers=auth("admin")
    ).json()
    assert [n["id"] for n in api["items"]] == [overdue_id]


def test_personal_data_is_masked_for_qa_read_as_the_api_masks_it(served: Served) -> None:
    [item] = review_items(served, 1)
    with served.rt.db.session() as s:
        nc = s.scalars(select(Nonconformity)).first()
        assert nc is not None
        nc.detail = f"customer asked to be called on {MOBILE_IN_TEXT}"
    qa = signed_in(served, "qa-read")
    ops = signed_in(served, "operator")
    for path in ("/qa/review", "/qa/nonconformities?month=2026-10"):
        masked = qa.get(path).text
        assert PHONE not in masked and EMAIL not in masked and MOBILE_IN_TEXT not in masked, path
    review = qa.get("/qa/review").text
    api = served.client.get("/review", headers=auth("qa-read")).json()["items"]
    [shown] = [i for i in api if i["id"] == item]
    assert shown["response"]["contact"]["phone"] in review
    assert shown["response"]["comment"] in review
    assert PHONE in ops.get("/qa/review").text
    assert MOBILE_IN_TEXT in ops.get("/qa/nonconformities?month=2026-10").text
    api_nc = served.client.get("/nonconformities", headers=auth("qa-read")).json()["items"]
    assert all(MOBILE_IN_TEXT not in n["detail"] for n in api_nc)


def test_operator_settles_a_review_item_audited_like_the_api(served: Served) -> None:
    first, second = review_items(served, 2)
    with served.rt.db.session() as s:
        incident_id = s.scalar(select(Match.incident_id).where(Match.incident_id.is_not(None)))
    qa = signed_in(served, "qa-read")
    assert 'action="/qa/review/' not in qa.get("/qa/review").text
    refused = qa.post(f"/qa/review/{first}", data={"csrf": page_csrf(qa), "action": "dismiss"})
    assert refused.status_code == 403
    ops = signed_in(served, "operator")
    csrf = page_csrf(ops)
    no_csrf = ops.post(f"/qa/review/{first}", data={"action": "dismiss"})
    assert no_csrf.status_code == 400
    nul = ops.post(
        f"/qa/review/{first}", data={"csrf": csrf, "action": "dismiss", "note": "a\x00b"}
    )
    assert nul.status_code == 400 and "note" in nul.text
    huge = ops.post(f"/qa/review/{2**40}", data={"csrf": csrf, "action": "dismiss"})
    assert huge.status_code == 404
    assert audit_entries(served, "review.resolve") == []
    r = ops.post(
        f"/qa/review/{first}",
        data={
            "csrf": csrf,
            "action": "match",
            "incident_id": str(incident_id),
            "note": "same caller",
        },
    )
    assert r.status_code == 303 and "settled=" in r.headers["location"]
    assert f"#{first}: matched" in ops.get(r.headers["location"]).text
    again = ops.post(f"/qa/review/{first}", data={"csrf": csrf, "action": "dismiss"})
    assert "already+settled" in again.headers["location"]
    ops.post(f"/qa/review/{second}", data={"csrf": csrf, "action": "dismiss"})
    with served.rt.db.session() as s:
        settled = {m.id: (m.status, m.incident_id, m.decided_by) for m in s.scalars(select(Match))}
    assert settled[first] == ("matched", incident_id, "operator-user")
    assert settled[second][0] == "dismissed"
    entries = audit_entries(served, "review.resolve")
    assert [(e.actor, e.entity_id) for e in entries] == [
        ("operator-user", str(first)),
        ("operator-user", str(second)),
    ]


def test_export_download_is_the_apis_bytes_and_audited_via_web(served: Served) -> None:
    qa = signed_in(served, "qa-read")
    page = qa.get("/qa/downloads", params={"month": "2026-10"}).text
    assert 'href="/qa/exports/2026-10?format=xlsx"' in page
    got = qa.get("/qa/exports/2026-10", params={"format": "csv"})
    assert got.status_code == 200
    assert got.headers["content-disposition"] == 'attachment; filename="qloop-2026-10.csv"'
    api = served.client.get("/exports/2026-10", params={"format": "csv"}, headers=auth("qa-read"))
    assert got.content == api.content and len(got.content.splitlines()) > 2
    vias = [(e.actor, e.detail["via"], e.detail["masked"]) for e in audit_entries(served, "export")]
    assert vias == [("qa-read-user", "web", True), ("qa-read-user", "api", True)]
    ops = signed_in(served, "operator")
    assert ops.get("/qa/exports/2026-10").status_code == 403
    assert "/qa/exports/" not in ops.get("/qa/downloads").text
    assert qa.get("/qa/exports/2026-10", params={"format": "exe"}).status_code == 404


def test_language_switch_and_catalogue(served: Served) -> None:
    client = signed_in(served, "qa-read")
    zh = client.get("/qa", params={"month": "2026-10"}).text
    assert "回访及时率" in zh and '<html lang="zh-CN">' in zh  # a CN calendar: zh-CN first
    r = client.get("/qa/lang/en", params={"next": "/qa/nonconformities?month=2026-10"})
    assert r.headers["location"] == "/qa/nonconformities?month=2026-10"
    en = client.get("/qa", params={"month": "2026-10"}).text
    assert "Callback within the window" in en and "回访及时率" not in en
    away = client.get("/qa/lang/zh-CN", params={"next": "//evil.example/"})
    assert away.headers["location"] == "/qa"


def test_every_label_the_templates_use_is_in_the_catalogue() -> None:
    labels = i18n.catalogue()
    used = {
        key
        for path in TEMPLATES.glob("*.html")
        for key in re.findall(r"""t\(["']([a-z_]+)["']\)""", path.read_text(encoding="utf-8"))
    }
    assert used and used <= set(labels), used - set(labels)
    for key in labels:
        assert set(labels[key]) >= set(i18n.LANGUAGES), key


def test_report_and_evidence_downloads_are_audited_via_web(served: Served) -> None:
    qa = signed_in(served, "qa-read")
    page = qa.get("/qa/downloads", params={"month": "2026-10"}).text
    assert 'href="/qa/reports/2026-10?format=pdf"' in page and 'action="/qa/evidence"' in page
    pdf = qa.get("/qa/reports/2026-10", params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "qloop-report-2026-10-" in pdf.headers["content-disposition"]
    qa.get("/qa/lang/en")
    html = qa.get("/qa/reports/2026-10", params={"format": "html"})
    assert html.status_code == 200 and b'<html lang="en">' in html.content
    zipped = qa.get("/qa/evidence", params={"start": "2026-10", "end": "2026-10"})
    assert zipped.status_code == 200 and zipped.content.startswith(b"PK")
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
        assert any(n.startswith("manifest") for n in z.namelist())
    backwards = qa.get("/qa/evidence", params={"start": "2026-10", "end": "2026-09"})
    assert backwards.status_code == 422 and "before" in backwards.text
    exports = [
        (e.actor, e.detail["format"], e.detail["via"]) for e in audit_entries(served, "export")
    ]
    assert exports == [
        ("qa-read-user", "report:pdf", "web"),
        ("qa-read-user", "report:html", "web"),
    ]
    [pack] = audit_entries(served, "evidence")
    assert (pack.actor, pack.detail["via"]) == ("qa-read-user", "web")
    ops = signed_in(served, "operator")
    assert ops.get("/qa/reports/2026-10").status_code == 403
    assert ops.get("/qa/evidence", params={"start": "2026-10", "end": "2026-10"}).status_code == 403


def test_sessions_work_across_server_processes_and_sign_out_ends_them_everywhere(
    served: Served, monkeypatch: object
) -> None:
    """``qloop serve --workers N``: a cookie made by one process is read by the others, and a
    sign-out through one is refused by all (the ended session is in the store)."""
    import pytest
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.web.session import SECRET_ENV

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    mp.setenv(SECRET_ENV, "one-secret-for-every-worker-process")
    first_rt, second_rt = served.deployment.open(), served.deployment.open()
    first = create_app(first_rt.config, runtime=first_rt)
    second = create_app(second_rt.config, runtime=second_rt)
    with (
        TestClient(first, follow_redirects=False) as a,
        TestClient(second, follow_redirects=False) as b,
    ):
        form = a.get("/qa/signin")
        r = a.post("/qa/signin", data={"csrf": csrf_of(form.text), "token": TOKENS["qa-read"]})
        assert r.status_code == 303
        cookie = a.cookies["qloop_qa"]
        b.cookies.set("qloop_qa", cookie, path="/qa")
        assert b.get("/qa").status_code == 200  # the other process reads the cookie
        assert a.post("/qa/signout", data={"csrf": page_csrf(a)}).status_code == 303
        b.cookies.set("qloop_qa", cookie, path="/qa")
        assert (b.get("/qa").status_code, b.get("/qa").headers["location"]) == (303, "/qa/signin")
