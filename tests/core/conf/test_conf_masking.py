"""Secrets are masked when the config is echoed and never appear in ConfigError."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest

from core import registry
from core.conf import (
    ConfigError,
    format_problems,
    interpolate,
    is_secret_name,
    load_config,
    mask,
    mask_text,
    mask_url,
    read_yaml,
    secret_paths_of,
    secret_values,
    validate,
)


@pytest.mark.parametrize(
    "name",
    [
        "api_token",
        "Password",
        "DB_PASSWD",
        "client_secret",
        "api_key",
        "apiKey",
        "API-KEY",
        "private_key",
        "credentials",
        "Authorization",
        "auth_token",
        "JIRA_TOKEN",
    ],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["url", "username", "email", "auth", "seed", "keyring", 3, None])
def test_not_secret_names(name):
    assert not is_secret_name(name)


def test_mask_keys_urls_and_paths():
    data = {
        "database_url": "postgresql://qloop:pw-db@db:5432/qloop",
        "redis_url": "redis://:redis-pw@cache:6379/0",
        "plain_url": "https://example.com:8443/path?q=1",
        "sources": {
            "jira": {
                "auth": {"email": "ops@example.com", "API_TOKEN": "jira-tok"},
                "headers": [{"Authorization": "Bearer abc"}],
                "credentials": {"user": "u", "pass": "p"},
                "password": None,
                "client_secret": "",
                "from_env": "opaque-value",
            }
        },
    }
    before = copy.deepcopy(data)
    masked = mask(data, [("sources", "jira", "from_env")])
    assert data == before  # not modified
    assert masked["database_url"] == "postgresql://qloop:***@db:5432/qloop"
    assert masked["redis_url"] == "redis://:***@cache:6379/0"
    assert masked["plain_url"] == "https://example.com:8443/path?q=1"
    jira = masked["sources"]["jira"]
    assert jira["auth"] == {"email": "ops@example.com", "API_TOKEN": "***"}
    assert jira["headers"] == [{"Authorization": "***"}]
    assert jira["credentials"] == "***"
    assert jira["password"] is None and jira["client_secret"] == ""
    assert jira["from_env"] == "***"


def test_mask_url_and_mask_text():
    assert mask_url("see postgresql+psycopg://u:p%40ss@h/db now") == (
        "see postgresql+psycopg://u:***@h/db now"
    )
    assert mask_url("http://host:8080/x@y") == "http://host:8080/x@y"
    text = "token hunter2-long refused by https://bot:s3cret@api.example/x (hunter2-long)"
    assert mask_text(text, ["hunter2-long", ""]) == (
        "token *** refused by https://bot:***@api.example/x (***)"
    )


def test_secret_values():
    data = {"a": {"token": 12345}, "b": "redis://:rpw@h", "c": {"keep": "x"}, "d": "v"}
    assert secret_values(data, [("d",)]) == {"12345", "rpw", "v"}


SECRET_CONFIG = """\
database_url: ${DB_URL}
redis_url: redis://:redis-pw-1234@cache:6379/0
calendars:
  c: {timezone: UTC}
sources:
  itsm:
    type: vault
    url: https://itsm.example
    api_token: ${ITSM_TOKEN}
    shared: ${SHARED_SECRET}
    port: ${PORT:-8443}
policies:
  default: {calendar: c}
"""

ENV = {
    "DB_URL": "postgresql://qloop:db-pw-5678@db/qloop",
    "ITSM_TOKEN": "itsm-token-abcdef",
    "SHARED_SECRET": "shared-secret-9999",
}

VAULT_OPTIONS = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "pattern": "^https://"},
        "api_token": {"type": "string"},
        "shared": {"type": "string"},
        "port": {"type": "integer"},
    },
}


@pytest.fixture
def vault_type(monkeypatch):
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    registry.register("source", "vault", lambda *a: None, VAULT_OPTIONS)
    return registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qloop.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_app_config_masked(tmp_path, vault_type):
    cfg = load_config(write(tmp_path, SECRET_CONFIG), env=ENV)
    masked = cfg.masked()
    assert masked["database_url"] == "postgresql://qloop:***@db/qloop"
    assert masked["redis_url"] == "redis://:***@cache:6379/0"
    itsm = masked["sources"]["itsm"]
    assert itsm["api_token"] == "***"
    assert itsm["shared"] == "***"  # not a secret key, but from a *SECRET* variable
    assert itsm["port"] == 8443
    assert itsm["url"] == "https://itsm.example"
    assert ("sources", "itsm", "shared") in cfg.secret_paths
    assert cfg.data["sources"]["itsm"]["api_token"] == "itsm-token-abcdef"  # data keeps values
    assert cfg.sources["itsm"].options["api_token"] == "itsm-token-abcdef"
    shown = str(masked)
    for value in ("db-pw-5678", "redis-pw-1234", "itsm-token-abcdef", "shared-secret-9999"):
        assert value not in shown
        assert value in cfg.secret_values()


def test_secrets_never_appear_in_config_errors(tmp_path, vault_type):
    # every secret sits in a value that is wrong, and the file has other problems
    strict = {
        **VAULT_OPTIONS,
        "properties": {
            **VAULT_OPTIONS["properties"],
            "api_token": {"type": "string", "minLength": 40, "pattern": "^x"},
            "shared": {"type": "integer"},
        },
    }
    registry.register("source", "vault", lambda *a: None, strict)
    text = SECRET_CONFIG.replace(
        "url: https://itsm.example", "url: http://bot:url-pw-4321@itsm.example"
    ).replace("type: vault", "type: vault\n    policy: missing")
    env = {**ENV, "DB_URL": "mysql://qloop:db-pw-5678@db/qloop"}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env)
    err = info.value
    paths = [p.path for p in err.problems]
    for path in (
        "database_url",
        "sources.itsm.url",
        "sources.itsm.api_token",
        "sources.itsm.shared",
        "sources.itsm.policy",
    ):
        assert path in paths
    rendered = "\n".join([str(err), format_problems(err), repr(err.problems)])
    for value in (
        "db-pw-5678",
        "redis-pw-1234",
        "itsm-token-abcdef",
        "shared-secret-9999",
        "url-pw-4321",
    ):
        assert value not in rendered
    assert "api_token" in rendered  # the key is named, not the value


def test_secret_inside_an_invalid_mapping_is_not_quoted(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    registry.register(
        "source",
        "strict",
        lambda *a: None,
        {
            "type": "object",
            "properties": {"auth": {"enum": ["none"]}, "headers": {"type": "string"}},
        },
    )
    text = """\
    sources:
      s:
        type: strict
        policy: p
        auth: {password: pw-in-a-mapping}
        headers: [{X-Api-Key: key-in-a-list}]
    """
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    rendered = str(info.value)
    assert "sources.s.auth" in rendered and "sources.s.headers" in rendered
    assert "pw-in-a-mapping" not in rendered
    assert "key-in-a-list" not in rendered


def test_missing_secret_env_var_names_the_variable_only(tmp_path, vault_type):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, SECRET_CONFIG), env={"DB_URL": ENV["DB_URL"]})
    messages = [p.message for p in info.value.problems if p.path == "sources.itsm.api_token"]
    assert messages == ["environment variable ITSM_TOKEN is not set (and has no default)"]


def test_validate_messages_do_not_quote_secret_paths(tmp_path, vault_type):
    # the first net, without load_config's scrubbing: messages at secret paths hide the value
    strict = {
        "type": "object",
        "properties": {"api_token": {"type": "string", "maxLength": 3}, "pin": {"type": "string"}},
    }
    registry.register("source", "vault", lambda *a: None, strict)
    path = write(
        tmp_path,
        "sources:\n  s:\n    type: vault\n    api_token: tok-long-value\n    pin: ${PIN_SECRET}\n",
    )
    data, index, _ = read_yaml(path)
    result = interpolate(data, index, {"PIN_SECRET": "98765"})
    secret = frozenset(secret_paths_of(result.data, result.env_sources))
    problems = validate(result.data, index, secret_paths=secret)
    token = [p.message for p in problems if p.path == "sources.s.api_token"]
    pin = [p.message for p in problems if p.path == "sources.s.pin"]
    assert token and "tok-long-value" not in token[0]
    assert pin and "98765" not in pin[0]


def test_secret_values_are_scrubbed_from_other_messages(tmp_path, vault_type):
    # the second net: the same secret written under a key that is not secret
    registry.register(
        "source",
        "vault",
        lambda *a: None,
        {"type": "object", "properties": {"comment": {"type": "string", "maxLength": 5}}},
    )
    text = SECRET_CONFIG.replace("    port:", "    comment: itsm-token-abcdef\n    port:")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=ENV)
    (problem,) = [p for p in info.value.problems if p.path == "sources.itsm.comment"]
    assert "itsm-token-abcdef" not in problem.message
    assert "***" in problem.message


def test_mask_text_masks_the_encodings_a_remote_echoes():
    import base64
    from urllib.parse import quote, quote_plus

    secret = "pa ss/w+rd=9"
    basic = base64.b64encode(f"ops@example.com:{secret}".encode()).decode()
    alone = base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")
    texts = {
        f"Authorization: Basic {basic}": "Authorization: Basic ***",
        f"token {alone} revoked": "token *** revoked",
        f"?t={quote(secret, safe='')}&x=1": "?t=***&x=1",
        f"?t={quote_plus(secret)}": "?t=***",
        f"?t={quote(secret, safe='').replace('%2F', '%2f')}": "?t=***",
        '{"password": "pa ss\\/w+rd=9"}': '{"password": "***"}',
        f"literal {secret}.": "literal ***.",
    }
    for text, masked in texts.items():
        assert mask_text(text, [secret]) == masked, text
    ordinary = "Basic auth refused for ops@example.com (HTTP 401) at 2026-10-08T09:30:00+08:00"
    assert mask_text(ordinary, [secret]) == ordinary


def test_scrub_masks_what_the_process_knows(monkeypatch):
    from core.conf.masking import leaf_secret_values, remember_secrets, scrub

    monkeypatch.setenv("QLOOP_TEST_API_TOKEN", "env-token-4242")
    data = {
        "api": {"tokens": [{"name": "qa-user", "token": "qa0-abcdefgh", "role": "qa-read"}]},
        "sources": {"j": {"email": "ops@example.com", "api_token": "cfg-token-777"}},
    }
    leaves = leaf_secret_values(data, [("api", "tokens")])
    assert leaves == {"qa0-abcdefgh", "cfg-token-777"}  # not the name, role or e-mail
    remember_secrets(leaves)
    assert scrub("env-token-4242 cfg-token-777 qa0-abcdefgh qa-read qa-user") == (
        "*** *** *** qa-read qa-user"
    )
    assert scrub(None) is None
