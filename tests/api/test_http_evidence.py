"""``GET /evidence``: the pack streamed over HTTP is the CLI's pack (same bytes), audited."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from core.evidence import build_pack, verify_pack
from core.store.models import AuditLog
from tests.api.conftest import Served, auth

AS_OF = "2026-11-20T08:00:00+08:00"


def test_qa_downloads_the_pack_and_it_verifies(served: Served, tmp_path: Path) -> None:
    params = {"from": "2026-10", "to": "2026-10", "as_of": AS_OF}
    r = served.client.get("/evidence", params=params, headers=auth("qa-read"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="qloop-evidence-2026-10..2026-10.zip"' in r.headers["content-disposition"]
    assert r.headers["x-qloop-as-of"] == "2026-11-20T00:00:00+00:00"
    path = tmp_path / "pack.zip"
    path.write_bytes(r.content)
    assert verify_pack(path).ok

    from datetime import datetime

    manifest: list[bytes] = []
    same = b"".join(
        build_pack(served.rt, "2026-10", "2026-10", datetime.fromisoformat(AS_OF), manifest)
    )
    assert r.content == same  # the CLI's writer, the same bytes
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = zf.namelist()
    assert "reports/2026-10/qloop-report-2026-10-default.pdf" in names
    assert "export/2026-10/qloop-2026-10-default.csv" in names
    with served.rt.db.session() as s:
        (entry,) = s.query(AuditLog).filter_by(action="evidence").all()
        assert entry.actor == "qa-read-user" and entry.detail["via"] == "api"
        assert entry.detail["manifest_sha256"] == hashlib.sha256(manifest[0]).hexdigest()
        assert entry.detail["as_of"] == "2026-11-20T00:00:00+00:00"


def test_only_admin_and_qa_read_get_a_pack(served: Served) -> None:
    params = {"from": "2026-10", "to": "2026-10", "as_of": AS_OF}
    for role in ("operator", "channel"):
        r = served.client.get("/evidence", params=params, headers=auth(role))
        assert r.status_code == 403, role
    assert served.client.get("/evidence", params=params).status_code == 401
    r = served.client.get("/evidence", params=params, headers=auth("admin"))
    assert r.status_code == 200 and r.content.startswith(b"PK")


def test_bad_requests_are_named(served: Served) -> None:
    r = served.client.get(
        "/evidence", params={"from": "2026-10", "to": "2026-08"}, headers=auth("admin")
    )
    assert r.status_code == 400
    assert "--to 2026-08 is before --from 2026-10" in r.json()["detail"]
    r = served.client.get(
        "/evidence",
        params={"from": "2026-10", "to": "2026-10", "as_of": "2026-11-20T00:00:00"},
        headers=auth("admin"),
    )
    assert r.status_code == 422  # an instant without a zone
    r = served.client.get(
        "/evidence", params={"from": "2026-13", "to": "2026-10"}, headers=auth("admin")
    )
    assert r.status_code == 422
    r = served.client.get(
        "/evidence", params={"from": "0000-01", "to": "0000-01"}, headers=auth("admin")
    )
    assert r.status_code == 400 and "from: 0000-01 is out of range" in r.json()["detail"]
    with served.rt.db.session() as s:
        assert s.query(AuditLog).filter_by(action="evidence").count() == 0


def test_openapi_documents_the_route(served: Served) -> None:
    doc = served.client.get("/openapi.json").json()
    op = doc["paths"]["/evidence"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "as_of", "lang"}
    assert "application/zip" in op["responses"]["200"]["content"]
