"""Each auth scheme of the source kit against a respx-mocked API."""

from __future__ import annotations

import base64
import threading
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from connectors.kit.auth import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    OAuth2Auth,
    SessionAuth,
    build_auth,
)
from core.errors import ConfigError, FatalError

BASE = "https://tool.example.com"


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


@respx.mock
def test_basic_bearer_and_api_keys_sign_every_request() -> None:
    route = respx.get(f"{BASE}/me").mock(return_value=httpx.Response(200, json={}))
    for auth in (BasicAuth("ops", "pä:ss"), BearerAuth("tok-1"),
                 ApiKeyAuth("k-9", header="X-API-Key"),
                 ApiKeyAuth("k-9", header="Authorization", prefix="Token token="),
                 ApiKeyAuth("k-9", query="api_key")):  # fmt: skip
        with httpx.Client(base_url=BASE, auth=auth) as client:
            client.get("/me", params={"a": "1"})
    sent = [c.request for c in route.calls]
    user, _, password = (
        base64.b64decode(sent[0].headers["Authorization"][6:]).decode().partition(":")
    )
    assert (user, password) == ("ops", "pä:ss")
    assert sent[1].headers["Authorization"] == "Bearer tok-1"
    assert sent[2].headers["X-API-Key"] == "k-9"
    assert sent[3].headers["Authorization"] == "Token token=k-9"
    assert dict(sent[4].url.params) == {"a": "1", "api_key": "k-9"}
    with pytest.raises(ConfigError, match="exactly one of header and query"):
        ApiKeyAuth("k")


@respx.mock
def test_oauth2_client_credentials_reuses_the_token_until_it_expires() -> None:
    now = [0.0]
    token = respx.post(f"{BASE}/oauth/token").mock(
        side_effect=lambda r: httpx.Response(
            200, json={"access_token": f"T{len(token.calls)}", "expires_in": 600}
        )
    )
    api = respx.get(f"{BASE}/me").mock(return_value=httpx.Response(200, json={}))
    auth = OAuth2Auth(f"{BASE}/oauth/token", "cid", "csecret", scope="api", clock=lambda: now[0])
    with httpx.Client(base_url=BASE, auth=auth) as client:
        client.get("/me")
        client.get("/me")
        now[0] = 545.0  # within the leeway of the expiry: renewed before use
        client.get("/me")
    assert token.call_count == 2
    assert form(token.calls[0].request) == {"grant_type": "client_credentials",
                                            "client_id": "cid", "client_secret": "csecret",
                                            "scope": "api"}  # fmt: skip
    assert [c.request.headers["Authorization"] for c in api.calls] == [
        "Bearer T0", "Bearer T0", "Bearer T1"]  # fmt: skip


@respx.mock
def test_oauth2_password_grant_refreshes_then_falls_back_to_the_grant() -> None:
    answers = iter([
        httpx.Response(200, json={"access_token": "A", "refresh_token": "R1", "expires_in": 1800}),
        httpx.Response(200, json={"access_token": "B", "refresh_token": "R2", "expires_in": 1800}),
        httpx.Response(401, json={"error": "invalid_grant"}),
        httpx.Response(200, json={"access_token": "C", "expires_in": 1800}),
    ])  # fmt: skip
    token = respx.post(f"{BASE}/oauth_token.do").mock(side_effect=lambda r: next(answers))
    calls = iter([401, 200, 401, 200])
    api = respx.get(f"{BASE}/me").mock(side_effect=lambda r: httpx.Response(next(calls)))
    auth = OAuth2Auth(f"{BASE}/oauth_token.do", "cid", "cs", grant="password",
                      username="svc", password="pw")  # fmt: skip
    with httpx.Client(base_url=BASE, auth=auth) as client:
        assert client.get("/me").status_code == 200  # 401 → refreshed with R1 → retried
        assert client.get("/me").status_code == 200  # 401 → R2 refused → password again
    grants = [form(c.request)["grant_type"] for c in token.calls]
    assert grants == ["password", "refresh_token", "refresh_token", "password"]
    assert form(token.calls[1].request)["refresh_token"] == "R1"
    assert form(token.calls[0].request)["username"] == "svc"
    assert api.calls[-1].request.headers["Authorization"] == "Bearer C"


@respx.mock
def test_oauth2_refused_credentials_are_fatal_without_the_secret() -> None:
    respx.post(f"{BASE}/oauth/token").mock(
        return_value=httpx.Response(401, json={"error": "invalid_client"})
    )
    auth = OAuth2Auth(f"{BASE}/oauth/token", "cid", "very-secret")
    with httpx.Client(base_url=BASE, auth=auth) as client, pytest.raises(FatalError) as err:
        client.get("/me")
    assert "invalid_client" in str(err.value) and "very-secret" not in str(err.value)
    assert err.value.status == 401


@respx.mock
def test_session_login_once_relogin_on_expiry_and_logout() -> None:
    tokens = iter(["S1", "S2"])
    login = respx.get(f"{BASE}/apirest.php/initSession").mock(
        side_effect=lambda r: httpx.Response(200, json={"session_token": next(tokens)})
    )
    expired = {"S1": 2}  # the first session dies after two calls

    def api_answer(request: httpx.Request) -> httpx.Response:
        session = request.headers["Session-Token"]
        assert request.headers["App-Token"] == "app"
        if expired.get(session) == 0:
            return httpx.Response(401, json=["ERROR_SESSION_TOKEN_INVALID", "expired"])
        expired[session] = expired.get(session, 99) - 1
        return httpx.Response(200, json={"session": session})

    api = respx.get(f"{BASE}/apirest.php/Ticket").mock(side_effect=api_answer)
    logout = respx.get(f"{BASE}/apirest.php/killSession").mock(return_value=httpx.Response(200))
    auth = build_auth(
        {"scheme": "session", "login_method": "GET", "login_path": "initSession",
         "login_headers": {"Authorization": "user_token U"}, "header": "Session-Token",
         "logout_path": "killSession", "headers": {"App-Token": "app"}},
        f"{BASE}/apirest.php", "sources.glpi",
    )  # fmt: skip
    assert isinstance(auth, SessionAuth)
    with httpx.Client(base_url=f"{BASE}/apirest.php", auth=auth) as client:
        seen = [client.get("/Ticket").json()["session"] for _ in range(3)]
        auth.logout(client)
    assert seen == ["S1", "S1", "S2"] and login.call_count == 2 and api.call_count == 4
    assert login.calls[0].request.headers["Authorization"] == "user_token U"
    assert logout.calls[0].request.headers["Session-Token"] == "S2"
    with pytest.raises(ConfigError, match=r"sources.x.auth.scheme: unknown scheme 'ntlm'"):
        build_auth({"scheme": "ntlm"}, BASE, "sources.x")


@respx.mock
def test_session_after_login_calls_own_refusals_and_one_login_for_many_threads() -> None:
    """after_login runs with the new session; ``refused`` words a failed login; threads
    that find no session at once log in once; ``login()`` opens it before any call."""
    import threading
    import time

    from core.errors import RetriableError

    def slow_login(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)  # the other threads arrive while this login is under way
        return httpx.Response(200, json={"session_token": f"S{login.call_count + 1}"})

    login = respx.get(f"{BASE}/initSession").mock(side_effect=slow_login)
    scope = respx.post(f"{BASE}/changeActiveEntities").mock(return_value=httpx.Response(200))
    api = respx.get(f"{BASE}/Ticket").mock(return_value=httpx.Response(200, json=[]))

    def refused(where: str, response: httpx.Response) -> Exception:
        return RetriableError(f"{where}: {response.json()[0]}", status=response.status_code)

    auth = SessionAuth(
        httpx.Request("GET", f"{BASE}/initSession"), "Session-Token",
        refused=refused,
        after_login=lambda token: [httpx.Request("POST", f"{BASE}/changeActiveEntities")],
    )  # fmt: skip
    with httpx.Client(base_url=BASE, auth=auth) as client:
        threads = [threading.Thread(target=client.get, args=("/Ticket",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert login.call_count == 1 and api.call_count == 4 and auth.logins == 1
        assert scope.calls[0].request.headers["Session-Token"] == "S1"
        assert {c.request.headers["Session-Token"] for c in api.calls} == {"S1"}
        login.mock(return_value=httpx.Response(503, json=["ERROR_DOWN", "maintenance"]))
        fresh = SessionAuth(httpx.Request("GET", f"{BASE}/initSession"), "Session-Token",
                            refused=refused)  # fmt: skip
        with pytest.raises(RetriableError, match=r"GET /initSession \(session login\): ERROR_DOWN"):
            fresh.login(client)
        login.mock(return_value=httpx.Response(200, json={"session_token": "S9"}))
        assert fresh.login(client) == "S9" and fresh.login(client) == "S9"  # once
    assert login.call_count == 3


def test_a_session_login_that_fails_on_the_wire_releases_its_lock_at_once() -> None:
    """The login's flow holds the lock; a failed call must end it in the calling thread,
    not leave it to the collector (which may run it on another thread, where releasing
    the lock fails, and which meanwhile keeps every other thread from logging in)."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    auth = SessionAuth(httpx.Request("GET", f"{BASE}/initSession"), "Session-Token")
    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(httpx.ConnectError) as failed,
    ):
        auth.login(client)
    taken: list[bool] = []
    other = threading.Thread(target=lambda: taken.append(auth._lock.acquire(timeout=2)))
    other.start()
    other.join()
    assert failed.value is not None  # the failure (and its traceback) is still alive here
    assert taken == [True]
