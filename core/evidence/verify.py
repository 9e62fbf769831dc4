"""``qloop evidence verify``: every file of a pack against its manifest.

A file whose SHA-256 or size differs is *changed*, one the manifest lists
but the zip lacks is *missing*, one the zip holds but the manifest does not
list is *extra*. A zip that cannot be read, or lacks a readable manifest,
is an :class:`~core.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError

MANIFEST = "manifest.json"
READ = 64 * 1024


@dataclass
class VerifyResult:
    """What the check found; ``ok`` when nothing."""

    manifest_sha256: str
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def lines(self) -> list[str]:
        """One line per problem (``changed: NAME``…), or one saying all is well."""
        out = [
            f"{kind}: {name}"
            for kind in ("changed", "missing", "extra")
            for name in getattr(self, kind)
        ]
        return out or [f"ok: {self.checked} files match the manifest"]


def _manifest(zf: zipfile.ZipFile, path: Path) -> tuple[bytes, dict[str, tuple[str, int]]]:
    try:
        data = zf.read(MANIFEST)
    except KeyError:
        msg = f"{path}: no {MANIFEST} in the zip; not an evidence pack"
        raise InputError(msg) from None
    try:
        doc = json.loads(data)
        files = {f["name"]: (str(f["sha256"]), int(f["size"])) for f in doc["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{path}: {MANIFEST} is not a valid manifest ({exc})"
        raise InputError(msg) from None
    return data, files


def verify_pack(path: Path) -> VerifyResult:
    """Check every file of the pack at ``path`` against its manifest."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        msg = f"{path}: cannot read the zip ({exc})"
        raise InputError(msg) from None
    with zf:
        data, expected = _manifest(zf, path)
        result = VerifyResult(manifest_sha256=hashlib.sha256(data).hexdigest())
        present = {info.filename for info in zf.infolist() if info.filename != MANIFEST}
        for name in sorted(present - expected.keys()):
            result.extra.append(name)
        for name in sorted(expected):
            if name not in present:
                result.missing.append(name)
                continue
            digest = hashlib.sha256()
            size = 0
            try:
                with zf.open(name) as fh:
                    while chunk := fh.read(READ):
                        digest.update(chunk)
                        size += len(chunk)
            except (zipfile.BadZipFile, OSError):  # a damaged entry is a changed file
                result.changed.append(name)
                continue
            result.checked += 1
            if (digest.hexdigest(), size) != expected[name]:
                result.changed.append(name)
    return result
