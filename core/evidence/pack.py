"""``qloop evidence``: the audit evidence pack of a period, as one deterministic zip.

Entries, in name order, then ``manifest.json`` last:

- ``pack.json``: the period, ``as_of``, the months and the policies;
- ``export/<month>/…csv``: each month's export per policy, recomputed as of
  ``as_of`` (incidents, indicators, nonconformities);
- ``nonconformities.jsonl``: the period's nonconformities with their
  tickets, closure and full history;
- ``reports/<month>/qloop-report-<month>-<policy, or all>.{html,pdf}``: each month's
  quality report as of ``as_of``, in the pack's language (default: the
  report's, zh-CN for a CN calendar);
- ``review-decisions.jsonl``: the review-queue decisions and who made them;
- ``policies.json``: the policies in force (version and rules) and the
  versions the period's records were computed under;
- ``config.json``: the configuration in force, secrets masked;
- ``versions.json``: qloop's and the holiday data's versions;
- ``manifest.json``: every other entry's SHA-256 and size, sorted by name.

The zip is written entry by entry (:mod:`core.evidence.zipstream`); every
entry carries ``as_of`` as its timestamp, so the same stored facts and the
same ``as_of`` give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.compliance import whole_second
from core.errors import InputError
from core.evidence.contents import (
    Entry,
    export_entries,
    json_bytes,
    nonconformity_lines,
    policies_document,
    report_entries,
    review_lines,
    stored_versions,
    versions_document,
)
from core.evidence.zipstream import Digests, zip_chunks
from core.loop.common import audit
from core.report.model import check_lang
from core.runtime import Runtime
from core.stamps import Stamps
from core.timeutil import month_bounds, parse_month

MANIFEST = "manifest.json"
FORMAT = "qloop-evidence/1"
MAX_MONTHS = 120


def pack_months(start: str, end: str) -> list[str]:
    """The months from ``start`` to ``end`` (YYYY-MM, both included).

    Raises:
        InputError: a month is malformed, or ``end`` is before ``start``.
    """
    y0, m0 = _month(start, "--from")
    y1, m1 = _month(end, "--to")
    if (y1, m1) < (y0, m0):
        msg = f"--to {end} is before --from {start}"
        raise InputError(msg, field="--to")
    months = []
    y, m = y0, m0
    while (y, m) <= (y1, m1):
        months.append(f"{y:04d}-{m:02d}")
        y, m = y + (m == 12), m % 12 + 1
    if len(months) > MAX_MONTHS:
        msg = f"--from {start} --to {end} spans {len(months)} months; at most {MAX_MONTHS}"
        raise InputError(msg, field="--to")
    return months


FIRST_YEAR, LAST_YEAR = 1970, 9998
"""The years a pack may cover (the months' bounds must be instants in every zone)."""


def _month(text: str, where: str) -> tuple[int, int]:
    try:
        year, month = parse_month(text)
    except InputError as exc:
        msg = f"{where}: {exc}"
        raise InputError(msg, field=where) from None
    if not FIRST_YEAR <= year <= LAST_YEAR:
        msg = f"{where}: {text} is out of range; give a month from {FIRST_YEAR} to {LAST_YEAR}"
        raise InputError(msg, field=where)
    return year, month


def manifest_bytes(digests: Digests, fmt: str = FORMAT) -> bytes:
    """The manifest: every entry's SHA-256 and size, sorted by name (``fmt``: the pack's kind)."""
    files = [
        {"name": name, "sha256": sha, "size": size}
        for name, (sha, size) in sorted(digests.files.items())
    ]
    return json_bytes({"format": fmt, "algorithm": "sha256", "files": files})


def _entries(
    rt: Runtime,
    months: list[str],
    as_of: datetime,
    lang: str | None,
    digests: Digests,
    manifest: list[bytes],
) -> Iterator[Entry]:
    tz = ZoneInfo(rt.config.timezone)
    start = month_bounds(months[0], tz)[0]
    end = month_bounds(months[-1], tz)[1]
    with rt.db.session() as s:
        stored = stored_versions(s, months)
        fixed: dict[str, Iterable[bytes]] = {
            "config.json": [json_bytes(rt.config.masked())],
            "nonconformities.jsonl": nonconformity_lines(s, start, end, as_of),
            "pack.json": [
                json_bytes(
                    {
                        "format": FORMAT,
                        "from": months[0],
                        "to": months[-1],
                        "months": months,
                        "as_of": as_of.isoformat(),
                        "timezone": rt.config.timezone,
                        "policies": sorted(rt.policies),
                        "report_lang": lang,
                    }
                )
            ],
            "policies.json": [json_bytes(policies_document(rt, stored))],
            "review-decisions.jsonl": review_lines(s, start, end, as_of),
            "versions.json": [json_bytes(versions_document(stored))],
        }
        exports = export_entries(s, rt, months, as_of)
        # names in order: config, export/…, then the others with reports/… between
        # policies.json and review-decisions.jsonl
        yield "config.json", fixed.pop("config.json")
        yield from exports
        for name in sorted(fixed):
            if name > "reports/":
                break
            yield name, fixed.pop(name)
        yield from report_entries(rt, months, as_of, lang)
        for name in sorted(fixed):
            yield name, fixed[name]

    def last() -> Iterator[bytes]:
        data = manifest_bytes(digests)
        manifest.append(data)
        yield data

    yield MANIFEST, last()


def build_pack(
    rt: Runtime,
    start: str,
    end: str,
    as_of: datetime,
    manifest: list[bytes] | None = None,
    *,
    lang: str | None = None,
) -> Iterator[bytes]:
    """The pack's zip bytes, in chunks, as they are produced (nothing is written to the store).

    ``manifest``, when given, receives the manifest's bytes once the zip is
    complete. ``lang``: the reports' language (default: the report's own).

    Raises:
        InputError: a bad period, or an unknown ``lang`` (before any byte).
    """
    months = pack_months(start, end)
    if lang is not None:
        check_lang(lang)
    as_of = whole_second(as_of)
    digests = Digests()
    sink = manifest if manifest is not None else []
    entries = _entries(rt, months, as_of, lang, digests, sink)
    return zip_chunks(entries, stamp=as_of, digests=digests)


def audit_pack(
    rt: Runtime, *, actor: str, start: str, end: str, as_of: datetime, via: str, sha: str
) -> None:
    """Record who produced which evidence pack (and the manifest's SHA-256)."""
    with rt.db.session() as s:
        audit(
            s,
            rt,
            "evidence",
            "period",
            f"{start}..{end}",
            actor=actor,
            as_of=as_of.isoformat(),
            via=via,
            manifest_sha256=sha,
            qloop=Stamps.current().qloop,
        )


def check_out(out: Path) -> None:
    """Raises InputError naming ``--out`` when ``out`` is a folder or its folder is missing."""
    if out.is_dir():
        msg = f"--out {str(out)!r} is a folder; give the zip's file name"
        raise InputError(msg, field="--out")
    if not out.parent.is_dir():
        msg = f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist"
        raise InputError(msg, field="--out")


def write_whole(out: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``out`` whole or not at all (a temporary file, then a rename)."""
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    try:
        with tmp.open("xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_pack(
    rt: Runtime,
    start: str,
    end: str,
    as_of: datetime,
    out: Path,
    *,
    actor: str,
    lang: str | None = None,
) -> str:
    """Write the pack to ``out`` (whole or not at all); returns the manifest's SHA-256."""
    pack_months(start, end)  # bad input is an error before any file is touched
    if lang is not None:
        check_lang(lang)
    check_out(out)
    manifest: list[bytes] = []
    write_whole(out, build_pack(rt, start, end, as_of, manifest, lang=lang))
    sha = hashlib.sha256(manifest[0]).hexdigest()
    audit_pack(rt, actor=actor, start=start, end=end, as_of=whole_second(as_of), via="cli", sha=sha)
    return sha
