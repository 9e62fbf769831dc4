"""``qloop review-pack``: the yearly management review as one deterministic zip.

Entries, in name order, then ``manifest.json`` last (checked by
``qloop review-pack verify``, the evidence pack's verifier):

- ``review.json``: everything below as one JSON document (machines);
- ``review.html``: the review for people, in the pack's language
  (zh-CN by default for a CN calendar);
- ``review.xlsx``: the tables as sheets;
- ``kpi.csv``, ``nonconformity-closure.csv``, ``audit-findings.csv``: the
  same tables as CSV;
- ``campaigns/qloop-campaign-<name>-<lang>.{html,xlsx}``: the results report
  of each survey campaign whose window overlaps the year;
- ``complaints/qloop-complaints-<year>-<lang>.{html,xlsx}``: the year's
  complaint report;
- ``manifest.json``: every other entry's SHA-256 and size.

Every entry carries ``as_of`` as its timestamp, so the same stored facts,
findings file and ``as_of`` give the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from core.evidence.contents import json_bytes
from core.evidence.pack import check_out, manifest_bytes, write_whole
from core.evidence.zipstream import Digests, zip_chunks
from core.export.writers import csv_chunks, xlsx_chunks
from core.loop.common import audit
from core.report.model import check_lang
from core.review.build import review_and_documents
from core.review.findings import Finding
from core.review.page import to_html
from core.review.sections import documents
from core.review.tables import review_tables
from core.runtime import Runtime
from core.stamps import Stamps

FORMAT = "qloop-review/1"
MANIFEST = "manifest.json"


def review_chunks(
    rt: Runtime,
    year: int,
    as_of: datetime,
    *,
    findings: list[Finding],
    findings_file: str | None,
    lang: str | None,
    manifest: list[bytes],
) -> Iterator[bytes]:
    """The pack's zip bytes; ``manifest`` receives the manifest's bytes at the end.

    Raises:
        InputError: A bad year, ``as_of`` or ``lang`` (before any byte).
    """
    if lang is not None:
        check_lang(lang)
    data, docs = review_and_documents(
        rt, year, as_of=as_of, findings=findings, findings_file=findings_file
    )
    data["lang"] = lang or data["default_lang"]
    at = datetime.fromisoformat(data["as_of"])
    tables = review_tables(data)
    digests = Digests()

    def last() -> Iterator[bytes]:
        blob = manifest_bytes(digests, FORMAT)
        manifest.append(blob)
        yield blob

    entries: list[tuple[str, Iterable[bytes]]] = [
        ("audit-findings.csv", csv_chunks(tables[2])),
        *(
            (name, [blob])
            for name, blob in documents(
                docs.campaigns, docs.complaints, data["lang"], data["timezone"]
            )
        ),
        ("kpi.csv", csv_chunks(tables[0])),
        ("nonconformity-closure.csv", csv_chunks(tables[1])),
        ("review.html", [to_html(data, data["lang"])]),
        ("review.json", [json_bytes(data)]),
        ("review.xlsx", xlsx_chunks(tables, created=at)),
        (MANIFEST, last()),
    ]
    return zip_chunks(entries, stamp=at, digests=digests)


def write_review_pack(
    rt: Runtime,
    year: int,
    as_of: datetime,
    out: Path,
    *,
    actor: str,
    findings: list[Finding],
    findings_file: str | None = None,
    lang: str | None = None,
) -> str:
    """Write the pack to ``out`` (whole or not at all, audit-logged); the manifest's SHA-256."""
    check_out(out)
    manifest: list[bytes] = []
    chunks = review_chunks(
        rt,
        year,
        as_of,
        findings=findings,
        findings_file=findings_file,
        lang=lang,
        manifest=manifest,
    )
    write_whole(out, chunks)
    sha = hashlib.sha256(manifest[0]).hexdigest()
    with rt.db.session() as s:
        audit(
            s,
            rt,
            "review_pack",
            "year",
            str(year),
            actor=actor,
            as_of=as_of.isoformat(),
            manifest_sha256=sha,
            qloop=Stamps.current().qloop,
        )
    return sha
