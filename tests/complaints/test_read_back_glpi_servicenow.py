"""Root cause and rectification read back from GLPI and ServiceNow tickets, on their fakes.

GLPI: a ticket's followups (``ITILFollowup`` sub-items, paged with
``range``; rich text, private and public; naive server-local times) and its
fields (``GET /Ticket/{id}``). ServiceNow: an incident's journal entries
(``sys_journal_field``, comments and work notes, paged by the ``Link``
header; UTC) and its field values. An unknown ticket is a FatalError naming it.
End to end, a GLPI complaint's ticket gets its root cause and rectification
from followups and, once closed, its follow-up call.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

import mappings
from connectors.glpi import GlpiSource
from connectors.servicenow import ServiceNowSource
from connectors.servicenow import readback as sn_readback
from core.complaints.match import field_names, read_back
from core.connector import ConnectorContext, TicketFields, TicketNotes
from core.errors import FatalError
from core.loop import run_once
from core.records import TicketComment, TicketNote
from core.store.models import Complaint
from tests.connectors.test_jira_sm_tickets import request
from tests.fakes.glpi import APP_TOKEN, USER_TOKEN, FakeGlpi, enc
from tests.fakes.server import serve
from tests.fakes.servicenow import PASSWORD, USER, FakeServiceNow
from tests.utils.loop import Deployment

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
FIX = {"comment_pattern": r"(?i)rectification[:：]\s*(.+)"}


# -- GLPI --------------------------------------------------------------------------------


@pytest.fixture
def glpi() -> Iterator[tuple[FakeGlpi, str]]:
    fake = FakeGlpi()
    fake.generate(6)
    with serve(fake.app()) as url:
        yield fake, f"{url}/apirest.php"


def glpi_source(tmp_path: Path, url: str) -> GlpiSource:
    ctx = ConnectorContext(tmp_path, mappings.load("glpi"), sleep=lambda _: None)
    options = {"base_url": url, "app_token": APP_TOKEN, "user_token": USER_TOKEN,
               "server_timezone": "Europe/Paris"}  # fmt: skip
    return GlpiSource("glpi", options, ctx)


def test_glpi_followups_are_read_back_as_root_cause_and_rectification(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    fake.max_range = 3  # the server pages sub-items 3 at a time (Accept-Range)
    src = glpi_source(tmp_path, url)
    try:
        assert isinstance(src, TicketNotes)
        ref = src.create_ticket(request()).ref
        tid = int(ref)
        for n in range(5):  # older chatter, enough for several pages
            fake.followup(tid, f"<p>Checking log {n}</p>", at=T0.replace(hour=n))
        fake.followup(tid, "<p>Root cause: 证书过期 &amp; 未续签</p>",
                      at=datetime(2026, 11, 2, 10, tzinfo=UTC), private=True)  # fmt: skip
        fake.followup(tid, "<p>Rectification: 到期前 30 天自动告警</p><p>已验证</p>",
                      at=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))  # fmt: skip
        fake.followup(tid, "<p>Root cause: the newest one counts</p>",
                      at=datetime(2026, 11, 4, 8, tzinfo=UTC), private=True)  # fmt: skip
        notes = src.ticket_notes(ref)
        assert len(notes) == 8 and fake.calls[f"/Ticket/{tid}/ITILFollowup"] >= 3
        assert [n.at for n in notes] == sorted(n.at for n in notes if n.at)
        assert notes[5] == TicketNote(
            "Root cause: 证书过期 & 未续签", datetime(2026, 11, 2, 10, tzinfo=UTC)
        )
        block = mappings.load("glpi")["complaint"]
        cause = read_back(notes, block["root_cause"], "glpi.root_cause")
        fix = read_back(notes, FIX, "glpi.rectification")
        assert cause == ("the newest one counts", datetime(2026, 11, 4, 8, tzinfo=UTC))
        assert fix == ("到期前 30 天自动告警\n已验证", datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
        # qloop's own comment looks through every page for its marker: written once
        note = TicketComment("complaint-1", "This ticket is a customer complaint.")
        src.comment_ticket(ref, note)
        src.comment_ticket(ref, note)
        mine = [
            f for f in fake.followups if f["items_id"] == tid and "[complaint-1]" in f["content"]
        ]
        assert len(mine) == 1
    finally:
        src.close()


def test_glpi_ticket_fields_hold_root_cause_and_rectification(
    tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    src = glpi_source(tmp_path, url)
    try:
        assert isinstance(src, TicketFields)
        ref = src.create_ticket(request()).ref
        fake.tickets[int(ref)]["plugin_fields_rootcausefield"] = enc("<p>备份任务未监控</p>")
        cause = {"field": "plugin_fields_rootcausefield", "comment_prefix": "Root cause:"}
        fix = {"field": "content"}
        names = field_names(cause, fix)
        assert names == ["content", "plugin_fields_rootcausefield"]
        fields = src.ticket_fields(ref, names)
        assert fields["plugin_fields_rootcausefield"] == "备份任务未监控"
        notes = [TicketNote("Root cause: 旧的判断", T0)]
        assert read_back(notes, cause, "m", fields) == ("备份任务未监控", None)
        text, at = read_back(notes, fix, "m", fields) or ("", T0)
        assert at is None and "回访未完成 — please rectify." in text and "<p>" not in text
        # an empty field: the followup prefix still counts
        fake.tickets[int(ref)]["plugin_fields_rootcausefield"] = ""
        fields = src.ticket_fields(ref, names)
        assert read_back(notes, cause, "m", fields) == ("旧的判断", T0)
        assert src.ticket_fields(ref, ["no_such_field"]) == {"no_such_field": None}
    finally:
        src.close()


def test_glpi_unknown_ticket_is_fatal_naming_it(tmp_path: Path, glpi: tuple[FakeGlpi, str]) -> None:
    _, url = glpi
    src = glpi_source(tmp_path, url)
    try:
        with pytest.raises(FatalError, match=r"ticket 999999 not found") as notes_exc:
            src.ticket_notes("999999")
        assert notes_exc.value.attrs.get("ref") == "999999"
        with pytest.raises(FatalError, match=r"ticket 999999 not found"):
            src.ticket_fields("999999", ["content"])
        with pytest.raises(FatalError, match=r"'INC42' is not a GLPI ticket id"):
            src.ticket_notes("INC42")
    finally:
        src.close()


# -- ServiceNow --------------------------------------------------------------------------


@pytest.fixture
def sn() -> Iterator[tuple[FakeServiceNow, str]]:
    fake = FakeServiceNow()
    fake.generate(4, seed="notes", start=datetime(2026, 10, 1, tzinfo=UTC), days=20)
    with serve(fake.app()) as url:
        yield fake, url


def sn_source(tmp_path: Path, url: str) -> ServiceNowSource:
    ctx = ConnectorContext(tmp_path, mappings.load("servicenow"), sleep=lambda _: None)
    options = {"base_url": url, "auth": {"username": USER, "password": PASSWORD},
               "ticket": {"table": "incident"}}  # fmt: skip
    return ServiceNowSource("sn", options, ctx)


def test_servicenow_journal_is_read_back_as_root_cause_and_rectification(
    tmp_path: Path, sn: tuple[FakeServiceNow, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = sn
    monkeypatch.setattr(sn_readback, "PAGE", 2)  # several pages, followed by the Link header
    src = sn_source(tmp_path, url)
    try:
        assert isinstance(src, TicketNotes)
        ref = src.create_ticket(request()).ref
        other = next(k for k in fake.tables["incident"] if k != ref)
        fake.journal(ref, "comments", "Rectification: 证书到期前 30 天自动告警",
                     datetime(2026, 11, 3, 1, 30, tzinfo=UTC))  # fmt: skip
        fake.journal(ref, "work_notes", "Root cause: 证书过期未续签",
                     datetime(2026, 11, 2, 3, tzinfo=UTC))  # fmt: skip
        fake.journal(ref, "work_notes", "Rectification: (draft)", datetime(2026, 11, 1, tzinfo=UTC))
        fake.journal(ref, "approval_history", "Rectification: not a comment", T0)
        fake.journal(other, "comments", "Root cause: another incident's", T0)
        fake.now = datetime(2026, 11, 5, 8, tzinfo=UTC)
        fake.update(ref, work_notes="Checked the certificate store")
        notes = src.ticket_notes(ref)
        assert [n.text for n in notes] == [
            "Rectification: (draft)",
            "Root cause: 证书过期未续签",
            "Rectification: 证书到期前 30 天自动告警",
            "Checked the certificate store",
        ]
        assert notes[-1].at == fake.now
        journal = [q for q in fake.queries if q[0] == "sys_journal_field"]
        assert len(journal) >= 2 and all(q[1]["sysparm_display_value"] == "false" for q in journal)
        block = mappings.load("servicenow")["complaint"]
        cause = read_back(notes, block["root_cause"], "sn.root_cause")
        fix = read_back(notes, FIX, "sn.rectification")
        assert cause == ("证书过期未续签", datetime(2026, 11, 2, 3, tzinfo=UTC))
        assert fix == ("证书到期前 30 天自动告警", datetime(2026, 11, 3, 1, 30, tzinfo=UTC))
        # no entry yet, and the unversioned API's 404 for an empty list: none
        fake.empty_list_404 = True
        quiet = next(k for k in fake.tables["incident"] if k not in (ref, other))
        assert src.ticket_notes(quiet) == []
    finally:
        src.close()


def test_servicenow_fields_hold_root_cause_and_rectification(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    fake, url = sn
    src = sn_source(tmp_path, url)
    try:
        assert isinstance(src, TicketFields)
        ref = src.create_ticket(request()).ref
        fake.update(ref, u_root_cause="<p>备份任务未监控 &amp; 无告警</p>",
                    close_notes="流程整改：备份纳入监控", state="6")  # fmt: skip
        cause = {"field": "u_root_cause", "comment_prefix": "Root cause:"}
        fix = {"field": "close_notes"}
        names = field_names(cause, fix)
        fields = src.ticket_fields(ref, names)
        assert fields == {
            "close_notes": "流程整改：备份纳入监控",
            "u_root_cause": "备份任务未监控 & 无告警",
        }
        one = [q for q in fake.calls if q.endswith(f"/incident/{ref}")]
        assert one, "read with GET /api/now/table/incident/{sys_id}"
        notes = [TicketNote("Root cause: 旧的判断", T0)]
        assert read_back(notes, cause, "m", fields) == ("备份任务未监控 & 无告警", None)
        assert read_back(notes, fix, "m", fields) == ("流程整改：备份纳入监控", None)
        assert src.ticket_fields(ref, ["state"]) == {"state": "6"}  # a value, not "Résolu"
        fake.update(ref, u_root_cause="")
        fields = src.ticket_fields(ref, names)
        assert read_back(notes, cause, "m", fields) == ("旧的判断", T0)
    finally:
        src.close()


def test_servicenow_unknown_ticket_is_fatal_naming_it(
    tmp_path: Path, sn: tuple[FakeServiceNow, str]
) -> None:
    _, url = sn
    src = sn_source(tmp_path, url)
    unknown = "0" * 32
    try:
        with pytest.raises(FatalError, match=rf"ticket {unknown} not found") as exc:
            src.ticket_notes(unknown)
        assert exc.value.attrs.get("ref") == unknown
        with pytest.raises(FatalError, match=rf"ticket {unknown} not found"):
            src.ticket_fields(unknown, ["close_notes"])
    finally:
        src.close()


# -- end to end: a GLPI complaint from flag to closed ticket -----------------------------


def test_a_glpi_complaint_gets_its_root_cause_from_followups_and_closes(
    database_url: str, tmp_path: Path, glpi: tuple[FakeGlpi, str]
) -> None:
    fake, url = glpi
    doc = {
        "database_url": database_url,
        "timezone": "Europe/Paris",
        "state_dir": str(tmp_path / "state"),
        "calendars": {"fr": {"timezone": "Europe/Paris", "hours": {"mon-fri": "09:00-18:00"}}},
        "sources": {
            "glpi": {
                "type": "glpi",
                "base_url": url,
                "app_token": APP_TOKEN,
                "user_token": USER_TOKEN,
                "server_timezone": "Europe/Paris",
                "mapping": {
                    "complaint": {
                        "flag": {"field": "category", "contains": "Imprimante"},
                        "rectification": {"comment_prefix": None, **FIX},
                    }
                },
            }
        },
        "channels": {"phone": {"type": "sandbox", "role": "callback", "seed": "g"}},
        "policies": {
            "default": {
                "calendar": "fr",
                "response": {"P1": "15m", "P2": "30m", "P3": "4h", "P4": "1bd"},
                "resolution": {"P1": "4h", "P2": "8h", "P3": "3bd", "P4": "5bd"},
                "callback": {"channel": "phone", "within": "24h"},
                "nonconformity": {"push_to": "source", "rectify_within": "10bd"},
            }
        },
        "complaints": {"deadline": "60bd"},
    }
    path = tmp_path / "qloop.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    dep = Deployment(path)
    try:
        rt = dep.open()
        assert run_once(rt).errors == []
        with rt.db.session() as s:
            found = list(s.scalars(select(Complaint).order_by(Complaint.id)))
        flagged = [t for t in fake.tickets.values() if t["itilcategories_id"] == 2]
        assert flagged and len(found) == len(flagged)  # one complaint per flagged ticket
        c = found[0]
        assert c.ticket_ref is not None and c.root_cause is None
        tid = int(c.ticket_ref)
        assert tid in fake.tickets and tid not in {t["id"] for t in flagged}
        fake.followup(tid, "<p>Root cause: 打印驱动与新固件不兼容</p>", private=True)
        fake.followup(tid, "<p>Rectification：统一驱动版本</p>")
        fake.advance(600)
        fake.close(tid)
        dep.clock.advance(hours=1)
        assert run_once(rt).errors == []
        with rt.db.session() as s:
            c = s.get(Complaint, c.id)
            assert c is not None
            assert c.root_cause == "打印驱动与新固件不兼容"
            assert c.rectification == "统一驱动版本"
            assert c.root_cause_at == fake.now - timedelta(seconds=600)
            assert c.closed_at is not None and c.follow_up_token is not None
    finally:
        dep.close()
