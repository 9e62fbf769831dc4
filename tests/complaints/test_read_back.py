"""Root cause and rectification read back from ticket comments: the matchers, the Jira fake.

The mapping names a comment prefix or a pattern; the newest comment that
has it counts. The Jira connector reads an issue's comments (ADF, paged)
as plain text with their ``created`` instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mappings
from connectors.jira_sm import JiraSource
from connectors.jira_sm.tickets import adf
from core.complaints.match import field_names, flag_matchers, flagged_by, read_back
from core.connector import ConnectorContext, TicketFields, TicketNotes
from core.errors import ConfigError
from core.records import TicketNote
from tests.connectors.test_jira_sm_tickets import request
from tests.fakes.jira import FakeJira, source_options
from tests.fakes.server import serve

T1 = datetime(2026, 11, 2, 3, tzinfo=UTC)
T2 = datetime(2026, 11, 3, 3, tzinfo=UTC)


def test_the_newest_comment_with_the_prefix_holds_the_root_cause() -> None:
    notes = [
        TicketNote("root cause: 第一次判断：网络抖动", T1),
        TicketNote("qloop: please record the root cause", T1),
        TicketNote("  Root cause: 交换机端口老化\n已更换", T2),
        TicketNote("unrelated", T2),
    ]
    found = read_back(notes, {"comment_prefix": "Root cause:"}, "m.root_cause")
    assert found == ("交换机端口老化\n已更换", T2)
    assert read_back(notes, {"comment_prefix": "Fix:"}, "m") is None
    assert read_back(notes, None, "m") is None


def test_a_pattern_gives_its_first_group_else_the_whole_match() -> None:
    notes = [TicketNote("整改措施：更新备份策略；已验证"), TicketNote("nothing here")]
    spec = {"comment_pattern": r"整改措施[:：]\s*(.+)"}
    assert read_back(notes, spec, "m") == ("更新备份策略；已验证", None)
    whole = read_back(notes, {"comment_pattern": r"更新\S+策略"}, "m")
    assert whole == ("更新备份策略", None)


def test_a_bad_pattern_names_the_mapping_key() -> None:
    with pytest.raises(ConfigError, match=r"sources\.jira\.mapping\.complaint\.root_cause"):
        read_back(
            [TicketNote("x")], {"comment_pattern": "("}, "sources.jira.mapping.complaint.root_cause"
        )


@pytest.mark.parametrize(
    ("raw", "flagged"),
    [
        ({"fields": {"labels": ["vip", "Complaint"]}}, True),
        ({"fields": {"labels": ["vip"]}}, False),
        ({"fields": {"requestType": {"name": " complaint "}}}, True),
        ({"fields": {"requestType": {"name": "Service request"}}}, False),
        ({"fields": {"channel": "hotline"}}, True),
        ({"fields": {}}, False),
    ],
)
def test_a_source_flags_by_label_request_type_or_value(raw: dict, flagged: bool) -> None:
    mapping = {
        "complaint": {
            "flag": [
                {"field": "fields.labels", "contains": "complaint"},
                {"field": "fields.requestType.name", "equals": "Complaint"},
                {"field": "fields.channel", "in": ["hotline", "12345"]},
            ]
        }
    }
    matchers = flag_matchers(mapping)
    assert len(matchers) == 3
    assert (flagged_by(raw, matchers) is not None) is flagged
    assert flag_matchers({}) == []


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(issues=6)
    with serve(fake.app) as url:
        fake.server_url = url
        yield fake, url


def test_jira_comments_are_read_back_as_the_root_cause(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    mapping = mappings.load("jira_sm")
    ctx = ConnectorContext(tmp_path, mapping, sleep=lambda _: None)
    opts = source_options(url)
    opts["ticket"] = {**opts.get("ticket", {"project": "QA"})}
    src = JiraSource("jira", opts, ctx)
    try:
        assert isinstance(src, TicketNotes)
        ref = src.create_ticket(request()).ref
        issue = fake.issues[ref]
        for n, (text, created) in enumerate(
            [
                ("Root cause: 证书过期未续签", "2026-11-02T11:00:00.000+0800"),
                ("Rectification: 证书到期前 30 天自动告警", "2026-11-03T09:30:00.000+0800"),
            ]
        ):
            issue.comments.append({"id": str(900 + n), "body": adf(text), "created": created})
        notes = src.ticket_notes(ref)
        block = mapping["complaint"]
        cause = read_back(notes, block["root_cause"], "jira.root_cause")
        fix = read_back(notes, block["rectification"], "jira.rectification")
        assert cause == ("证书过期未续签", datetime(2026, 11, 2, 3, tzinfo=UTC))
        assert fix == ("证书到期前 30 天自动告警", datetime(2026, 11, 3, 1, 30, tzinfo=UTC))
    finally:
        src.close()


def test_a_ticket_field_holds_the_root_cause_before_any_comment(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    ctx = ConnectorContext(tmp_path, mappings.load("jira_sm"), sleep=lambda _: None)
    opts = source_options(url)
    opts["ticket"] = {**opts.get("ticket", {"project": "QA"})}
    src = JiraSource("jira", opts, ctx)
    try:
        assert isinstance(src, TicketFields)
        ref = src.create_ticket(request()).ref
        fake.issues[ref].extra.update(
            customfield_10070=adf("备份任务未监控"),  # a rich-text field
            customfield_10071={"id": "3", "value": "流程整改"},  # a select list
        )
        cause = {"field": "customfield_10070", "comment_prefix": "Root cause:"}
        fix = {"field": "customfield_10071"}
        names = field_names(cause, fix, None)
        assert names == ["customfield_10070", "customfield_10071"]
        fields = src.ticket_fields(ref, names)
        notes = [TicketNote("Root cause: 旧的判断", T1)]
        assert read_back(notes, cause, "m", fields) == ("备份任务未监控", None)
        assert read_back(notes, fix, "m", fields) == ("流程整改", None)
        # an empty field: the comment prefix still counts
        assert read_back(notes, cause, "m", {}) == ("旧的判断", T1)
        assert read_back(notes, fix, "m", {}) is None
    finally:
        src.close()
