"""The monthly quality report (质量月报, SPEC §12): its data and its documents.

``build`` gathers a month's data from the stored facts as of an instant
(:func:`build_report`), ``render`` turns it into JSON, HTML, XLSX or PDF in
zh-CN or en (:func:`render_report`); ``charts`` draws the SVG charts the
HTML report and the QA page show. The numbers are the export's: the same
:func:`core.export.as_of.judge_chunks`, folded into the same indicators
(:class:`core.compliance.indicators.IndicatorsFold`), a chunk at a time.
"""

from core.report.build import build_report
from core.report.model import FORMATS, LANGS, Report
from core.report.render import render_report

__all__ = ["FORMATS", "LANGS", "Report", "build_report", "render_report"]
