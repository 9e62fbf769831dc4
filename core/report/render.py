"""Render a report in a format and language: JSON, HTML, XLSX or PDF, as bytes.

The bytes depend only on the report's data, the format and the language
(creation dates and ids come from ``as_of``), so the same facts and
``as_of`` give the same file.
"""

from __future__ import annotations

import json

from core.report.catalogue import Labels
from core.report.html import to_html
from core.report.model import Report, check_format, check_lang
from core.report.pdf import to_pdf
from core.report.text import summary_lines
from core.report.xlsx import to_xlsx


def to_json(report: Report, lang: str) -> bytes:
    """The report's data plus its summary in ``lang`` (sorted keys, UTF-8)."""
    labels = Labels(lang, report.timezone)
    doc = dict(report.data)
    doc["lang"] = lang
    doc["summary_text"] = {
        section["policy"]: summary_lines(labels, section)
        for section in [
            *report.data["policies"],
            *([report.data["all"]] if report.data["all"] else []),
        ]
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def render_report(report: Report, fmt: str, lang: str | None = None) -> bytes:
    """The report as a ``fmt`` document (json, html, xlsx, pdf) in ``lang``.

    ``lang`` None: the report's default (zh-CN for a CN calendar).

    Raises:
        InputError: Unknown format or language (naming ``format`` or ``lang``).
    """
    check_format(fmt)
    language = lang or report.default_lang
    check_lang(language)
    if fmt == "json":
        return to_json(report, language)
    if fmt == "html":
        return to_html(report, language)
    if fmt == "xlsx":
        return to_xlsx(report, language)
    return to_pdf(report, language)
