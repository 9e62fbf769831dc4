"""The monthly quality report over HTTP (issue 11 item 2): documents, audit, no personal data."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select

from core.export import export_rows
from core.report import build_report, render_report
from core.store.models import AuditLog
from tests.api.conftest import Served, auth

AS_OF = "2026-11-05T00:00:00+08:00"
MEDIA = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}


def _get(served: Served, role: str = "qa-read", **params: str):  # type: ignore[no-untyped-def]
    return served.client.get("/reports/2026-10", params=params, headers=auth(role))


def _report_audits(served: Served) -> list[AuditLog]:
    with served.rt.db.session() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id))
        return [r for r in rows if str(r.detail.get("format", "")).startswith("report:")]


@pytest.mark.parametrize("fmt", ["html", "pdf", "xlsx", "json"])
def test_qa_read_downloads_the_report_document(served: Served, fmt: str) -> None:
    r = _get(served, format=fmt, as_of=AS_OF, lang="en")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[fmt]
    name = f"qloop-report-2026-10-default.{fmt}"  # one policy: its name, not "-all"
    assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
    assert r.headers["x-qloop-as-of"] == "2026-11-04T16:00:00+00:00"
    at = datetime.fromisoformat(AS_OF)
    assert r.content == render_report(build_report(served.rt, "2026-10", as_of=at), fmt, "en")
    [entry] = _report_audits(served)
    assert entry.actor == "qa-read-user" and entry.entity_id == "2026-10"
    assert entry.detail == {
        "format": f"report:{fmt}",
        "policies": ["default"],
        "masked": True,
        "via": "api",
        "as_of": "2026-11-04T16:00:00+00:00",
    }


def test_documents_open_in_their_language(served: Served) -> None:
    zh = _get(served, format="html", as_of=AS_OF)  # CN calendar: zh-CN by default
    assert "质量月报" in zh.text
    en = _get(served, format="html", as_of=AS_OF, lang="en")
    assert "Monthly quality report" in en.text and "质量月报" not in en.text
    pdf = PdfReader(io.BytesIO(_get(served, format="pdf", as_of=AS_OF).content))
    assert "质量月报" in "".join(pdf.pages[0].extract_text().replace("\x00", "").split())
    book = load_workbook(io.BytesIO(_get(served, format="xlsx", as_of=AS_OF).content))
    assert book.sheetnames
    doc = _get(served, format="json", as_of=AS_OF).json()
    assert doc["report_version"] == 2 and doc["scope"] == "default" and doc["lang"] == "zh-CN"


def test_without_as_of_the_report_is_as_of_now_and_repeats(served: Served) -> None:
    first = _get(served, format="json")
    assert first.status_code == 200
    at = first.headers["x-qloop-as-of"]
    assert datetime.fromisoformat(at) == served.rt.now().replace(microsecond=0)
    again = _get(served, format="json", as_of=at)
    assert again.content == first.content


def test_the_report_holds_no_personal_data(served: Served) -> None:
    """qa-read may read it: no contact detail or ticket title of the month appears in it."""
    pol = served.rt.policy("default")
    with served.rt.db.session() as s:
        rows = list(
            export_rows(
                s,
                policy="default",
                version=pol.version,
                month="2026-10",
                tz=ZoneInfo("Asia/Shanghai"),
                unmask=True,
            )
        )
    personal = {
        str(row[c])
        for row in rows
        for c in ("contact_name", "contact_phone", "contact_email", "title")
        if row[c]
    }
    assert len(personal) > 20
    for fmt in ("json", "html"):
        text = _get(served, format=fmt, as_of=AS_OF, lang="en").text
        leaked = sorted(p for p in personal if p in text)
        assert leaked == [], f"{fmt}: {leaked[:5]}"


def test_without_format_the_answer_is_todays_json(served: Served) -> None:
    r = _get(served)
    assert r.headers["content-type"] == "application/json"
    assert "content-disposition" not in r.headers
    assert set(r.json()) == {"period", "timezone", "policies"}
    assert _report_audits(served) == []


def test_bad_report_requests_name_the_parameter(served: Served) -> None:
    bad_format = _get(served, format="csv")
    assert bad_format.status_code == 422
    assert bad_format.json()["errors"][0]["path"] == "query.format"
    bad_lang = _get(served, format="html", lang="fr")
    assert bad_lang.status_code == 422
    assert bad_lang.json()["errors"][0]["path"] == "query.lang"
    lang_alone = _get(served, lang="en")
    assert lang_alone.status_code == 422 and "lang" in lang_alone.json()["detail"]
    unknown = _get(served, format="pdf", policy="nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert _get(served, "channel", format="pdf").status_code == 403
    assert served.client.get("/reports/2026-10", params={"format": "pdf"}).status_code == 401
    assert _report_audits(served) == []


def test_openapi_documents_the_parameters_and_media_types(served: Served) -> None:
    op = served.client.get("/openapi.json").json()["paths"]["/reports/{period}"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"period", "format", "lang", "policy", "as_of"} <= set(params)
    assert params["format"]["schema"]["anyOf"][0]["enum"] == ["html", "pdf", "xlsx", "json"]
    assert params["lang"]["schema"]["anyOf"][0]["enum"] == ["zh-CN", "en"]
    ok = op["responses"]["200"]
    assert set(ok["content"]) == {
        "application/json",
        "text/html",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert ok["content"]["application/json"]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/MonthlyReport"},
        {"$ref": "#/components/schemas/ReportDocument"},
    ]
    assert "x-qloop-as-of" in {h.lower() for h in ok["headers"]}
