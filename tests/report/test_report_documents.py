"""The report's documents (issue 11 items 1, 6): byte-identical, catalogue labels, SVG, PDF."""

from __future__ import annotations

import io
import re

import pypdfium2
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from core.errors import InputError
from core.export.as_of import parse_as_of
from core.loop import run_once
from core.report import build_report, render_report
from core.report.catalogue import messages
from tests.report.world import AS_OF, PERIOD
from tests.utils.loop import Deployment


def _report(dep: Deployment):  # type: ignore[no-untyped-def]
    rt = dep.open()
    run_once(rt)
    return rt, build_report(rt, PERIOD, as_of=parse_as_of(AS_OF))


def test_every_format_is_byte_identical_after_later_facts(deployment: Deployment) -> None:
    rt, report = _report(deployment)
    first = {fmt: render_report(report, fmt, "zh-CN") for fmt in ("json", "html", "xlsx", "pdf")}
    deployment.clock.advance(days=2)
    run_once(rt)
    again = build_report(rt, PERIOD, as_of=parse_as_of(AS_OF))
    for fmt, data in first.items():
        assert render_report(again, fmt, "zh-CN") == data, fmt


def test_catalogues_have_the_same_labels() -> None:
    assert set(messages("zh-CN")) == set(messages("en"))
    assert messages("zh-CN")["title"] == "质量月报"


def test_html_is_self_contained_with_inline_svg_and_labels(deployment: Deployment) -> None:
    _, report = _report(deployment)
    zh = render_report(report, "html", "zh-CN").decode("utf-8")
    en = render_report(report, "html", "en").decode("utf-8")
    assert zh.count("<svg ") == 6
    assert "<script" not in zh
    # the only URL is the SVG namespace; no link, image, font or stylesheet reference
    urls = set(re.findall(r"https?://[^\"' )<]+", zh))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|src=|@import|url\(", zh)
    assert "质量月报 2026-10" in zh and "回访及时率与覆盖率" in zh and "响应超时" in zh
    assert "Monthly quality report 2026-10" in en and "Response breach" in en
    assert "2026年11月5日" in zh  # Babel's zh-CN date, display zone Asia/Shanghai
    assert "Nov 5, 2026" in en
    assert "qloop" in zh and report.data["qloop_version"] in zh


def test_pdf_chinese_text_extracts_and_renders(deployment: Deployment) -> None:
    _, report = _report(deployment)
    pdf = render_report(report, "pdf", "zh-CN")
    raw = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    # pypdf spaces out (or NUL-separates) the CID font's glyphs: compare without them
    text = "".join(raw.replace("\x00", "").split())
    assert "质量月报2026-10" in text
    assert "统计期间" in text
    page = pypdfium2.PdfDocument(pdf)[0]
    bitmap = page.render(scale=1)
    width, stride, n = bitmap.width, bitmap.stride, bitmap.n_channels
    buf = bytes(bitmap.buffer)
    # the title line sits at the top of the first page (after a 10 mm margin, 20 pt)
    band = range(int(bitmap.height * 0.03), int(bitmap.height * 0.07))
    dark = sum(1 for y in band for x in range(width // 3) if buf[y * stride + x * n] < 128)
    assert dark > 200  # the Chinese title's glyphs are drawn (a missing font leaves it blank)


def test_xlsx_has_the_tables_with_numbers(deployment: Deployment) -> None:
    _, report = _report(deployment)
    book = load_workbook(io.BytesIO(render_report(report, "xlsx", "en")))
    assert book.sheetnames[0] == "about"
    sheet = book["1-indicators"]
    rows = {r[0]: r[1:] for r in sheet.iter_rows(values_only=True)}
    assert rows["Resolved incidents"][0] == 4
    assert rows["Response compliance"] == (3, 4, 0.75)


def test_bad_format_or_language_is_named(deployment: Deployment) -> None:
    _, report = _report(deployment)
    with pytest.raises(InputError, match="format"):
        render_report(report, "docx", "en")
    with pytest.raises(InputError, match="lang"):
        render_report(report, "json", "fr")


def test_a_long_table_is_cut_in_the_pdf_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.report import pdf as pdf_mod
    from core.report.catalogue import Labels
    from core.report.tables import ReportTable

    monkeypatch.setattr(pdf_mod, "PDF_ROWS", 3)
    labels = Labels("en", "UTC")
    doc = pdf_mod.ReportPdf("foot")
    doc.add_font(pdf_mod.FONT, fname=str(pdf_mod.font_path()))
    doc.add_page()
    rows: list[list[pdf_mod.Cell]] = [[f"row-{n}", str(n)] for n in range(1, 6)]
    pdf_mod.table_pdf(doc, labels, ReportTable("t", "Overdue", ["key", "n"], rows), "foot")
    text = PdfReader(io.BytesIO(bytes(doc.output()))).pages[0].extract_text()
    flat = "".join(text.replace("\x00", "").split())
    assert "row-3" in flat
    assert "row-4" not in flat and "row-5" not in flat
    assert "Thefirst3of5rows" in flat  # says how many there are and where the rest is
