"""Bearer tokens and roles: 401 without or with a bad token, 403 for a role that may not,
contact details masked for roles that may not see them, tokens never in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from api.app import create_app
from core.conf import load_config
from core.errors import ConfigError
from core.privacy import mask_email, mask_name, mask_phone
from core.store.models import AuditLog, Incident
from tests.api.conftest import TOKENS, Served, api_config, auth


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-known-token"}, {"Authorization": "Basic YWRtaW46eA=="}],
    ids=["none", "unknown", "not-bearer"],
)
def test_missing_or_bad_token_is_401_with_a_challenge(
    served: Served, headers: dict[str, str]
) -> None:
    for url in ("/incidents", "/sources", "/exports/2026-10", "/review"):
        r = served.client.get(url, headers=headers)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"] == "application/problem+json"
        assert TOKENS["admin"] not in r.text


@pytest.mark.parametrize(
    ("role", "method", "url"),
    [
        ("channel", "GET", "/incidents"),
        ("channel", "GET", "/exports/2026-10"),
        ("qa-read", "POST", "/sources/itsm/sync"),
        ("qa-read", "POST", "/review/1/dismiss"),
        ("operator", "GET", "/exports/2026-10"),
        ("operator", "POST", "/channels/hook/outcomes"),
    ],
)
def test_role_that_may_not_is_403(served: Served, role: str, method: str, url: str) -> None:
    r = served.client.request(method, url, headers=auth(role), json={})
    assert r.status_code == 403
    assert r.json()["type"].endswith("/forbidden")
    assert role in r.json()["detail"]


def test_public_endpoints_need_no_token(served: Served) -> None:
    for url in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert served.client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("role", "masked"), [("admin", False), ("operator", False), ("qa-read", True)]
)
def test_contact_details_are_masked_for_roles_that_may_not_see_them(
    served: Served, role: str, masked: bool
) -> None:
    with served.rt.db.session() as s:
        inc = s.scalars(select(Incident).where(Incident.contact_phone.is_not(None))).first()
        assert inc is not None
    body = served.client.get(f"/incidents/{inc.id}", headers=auth(role)).json()
    expected = (
        {
            "name": mask_name(inc.contact_name),
            "phone": mask_phone(inc.contact_phone),
            "email": mask_email(inc.contact_email),
        }
        if masked
        else {"name": inc.contact_name, "phone": inc.contact_phone, "email": inc.contact_email}
    )
    assert body["contact"] == expected
    assert (body["raw"] is None) is masked
    listed = served.client.get("/incidents", params={"key": inc.key}, headers=auth(role)).json()[
        "items"
    ]
    assert listed[0]["contact"] == expected
    answers = served.client.get(
        "/responses", params={"channel": "phone", "limit": 20}, headers=auth(role)
    ).json()["items"]
    phones = [a["contact"]["phone"] for a in answers if a["contact"]["phone"]]
    assert phones and all(("*" in p) is masked for p in phones)
    for resp in body["responses"]:
        if resp["contact"]["phone"]:
            assert ("*" in resp["contact"]["phone"]) is masked


def test_channel_token_may_only_post_outcomes_for_its_channels(served: Served) -> None:
    outcome = {
        "provider_event_id": "ivr-1",
        "kind": "callback_attempt",
        "occurred_at": datetime(2026, 10, 20, 8, 0, tzinfo=UTC).isoformat(),
        "reached": False,
    }
    ok = served.client.post(
        "/channels/hook/outcomes", json={"outcomes": [outcome]}, headers=auth("channel")
    )
    assert ok.status_code == 200
    assert ok.json() == {"channel": "hook", "received": 1, "created": 1, "duplicates": 0}
    other = served.client.post(
        "/channels/phone/outcomes", json={"outcomes": [outcome]}, headers=auth("channel")
    )
    assert other.status_code == 403
    assert served.client.get("/responses", headers=auth("channel")).status_code == 403
    assert served.client.post("/sources/itsm/sync", headers=auth("channel")).status_code == 403
    with served.rt.db.session() as s:
        entries = list(s.scalars(select(AuditLog).where(AuditLog.actor == "channel-user")))
    # the token's use is audited once for the day, the posted outcomes are not
    assert [(e.action, e.entity_id) for e in entries] == [("token.use", "channel-user")]
    assert all(t not in repr(e.detail) for e in entries for t in TOKENS.values())


def test_outcomes_body_is_validated_and_never_half_stored(served: Served) -> None:
    good = {
        "provider_event_id": "ivr-2",
        "kind": "callback_attempt",
        "occurred_at": "2026-10-20T08:00:00+08:00",
    }
    naive = {**good, "provider_event_id": "ivr-3", "occurred_at": "2026-10-20T08:00:00"}
    r = served.client.post(
        "/channels/hook/outcomes", json={"outcomes": [good, naive]}, headers=auth("admin")
    )
    assert r.status_code == 422
    assert [e["path"] for e in r.json()["errors"]] == ["body.outcomes[1].occurred_at"]
    listed = served.client.get("/responses", params={"channel": "hook"}, headers=auth("admin"))
    assert listed.json()["items"] == []


def test_api_section_is_checked_when_the_app_is_built(database_url: str, tmp_path: Path) -> None:
    path = api_config(database_url, tmp_path, channel_token_channels=("nowhere",))
    with pytest.raises(ConfigError) as err:
        create_app(load_config(path))
    assert "api.tokens[3].channels" in str(err.value)
    assert "nowhere" in str(err.value)
    assert TOKENS["channel"] not in str(err.value)


def test_a_short_token_is_refused_by_validation_without_showing_it(
    database_url: str, tmp_path: Path
) -> None:
    path = api_config(database_url, tmp_path)
    path.write_text(path.read_text().replace(TOKENS["operator"], "short-secret"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "api.tokens[1].token" in str(err.value)
    assert "short-secret" not in str(err.value)
