"""LimeSurvey JSON-RPC client (respx): session keys, in-band errors, retries."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connectors.http import HttpService
from connectors.limesurvey.rpc import RpcClient, is_error_status, is_invalid_session
from core.errors import FatalError, RetriableError

URL = "https://ls.example.com/index.php/admin/remotecontrol"
PASSWORD = "pw-never-shown"


def client(sleeps: list[float] | None = None) -> RpcClient:
    slept = sleeps if sleeps is not None else []
    http = HttpService("channels.ls", "https://ls.example.com", sleep=slept.append)
    return RpcClient("channels.ls", URL, "qloop", PASSWORD, http=http)


def rpc_server(
    handler: Callable[[str, list[Any]], Any],
) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect answering JSON-RPC bodies with ``handler(method, params)``."""

    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        result = handler(body["method"], body["params"])
        if isinstance(result, httpx.Response):
            return result
        return httpx.Response(200, json={"id": body["id"], "result": result, "error": None})

    return respond


@respx.mock
def test_call_renews_an_expired_session_key_once_and_retries() -> None:
    """An 'Invalid session key' inside a 200 gets a new key and the call is tried again."""
    keys = iter(["key-1", "key-2"])
    seen: list[tuple[str, str]] = []

    def handler(method: str, params: list[Any]) -> Any:
        if method == "get_session_key":
            assert params[:2] == ["qloop", PASSWORD]
            return next(keys)
        seen.append((method, params[0]))
        if params[0] == "key-1":
            return {"status": "Invalid Session key"}  # some methods spell it this way
        return {"completed": "N"}

    respx.post(URL).mock(side_effect=rpc_server(handler))
    rpc = client()
    assert rpc.call("get_participant_properties", 1, 5, ["completed"]) == {"completed": "N"}
    assert seen == [
        ("get_participant_properties", "key-1"),
        ("get_participant_properties", "key-2"),
    ]
    # the renewed key is kept for the next call
    assert rpc.call("get_participant_properties", 1, 5, ["completed"]) == {"completed": "N"}
    assert seen[-1] == ("get_participant_properties", "key-2")


@respx.mock
def test_call_gives_up_when_a_fresh_key_is_refused_too() -> None:
    respx.post(URL).mock(
        side_effect=rpc_server(
            lambda m, p: "k" if m == "get_session_key" else {"status": "Invalid session key"}
        )
    )
    with pytest.raises(FatalError, match="refuses a fresh session key"):
        client().call("list_participants", 1)


@respx.mock
def test_bad_credentials_are_fatal_and_never_show_the_password() -> None:
    respx.post(URL).mock(
        side_effect=rpc_server(lambda m, p: {"status": "Invalid user name or password"})
    )
    with pytest.raises(FatalError) as err:
        client().call("list_participants", 1)
    assert "Invalid user name or password" in str(err.value)
    assert "'qloop'" in str(err.value)
    assert PASSWORD not in str(err.value)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"status": "No permission"}, "list_participants: No permission"),
        ({"status": "Error: Invalid survey ID"}, "Error: Invalid survey ID"),
        ({"status": "Error: No survey participants table"}, "No survey participants table"),
    ],
    ids=["permission", "survey", "table"],
)
@respx.mock
def test_error_status_in_a_200_reply_is_fatal_with_its_message(result: Any, message: str) -> None:
    respx.post(URL).mock(
        side_effect=rpc_server(lambda m, p: "SECRETKEY42" if m == "get_session_key" else result)
    )
    with pytest.raises(FatalError, match=message) as err:
        client().call("list_participants", 1)
    assert "SECRETKEY42" not in str(err.value)


@respx.mock
def test_declared_empty_status_returns_none() -> None:
    respx.post(URL).mock(
        side_effect=rpc_server(
            lambda m, p: (
                "k" if m == "get_session_key" else {"status": "No survey participants found."}
            )
        )
    )
    assert client().call("list_participants", 1, empty={"No survey participants found."}) is None


@respx.mock
def test_protocol_error_string_is_fatal() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["method"] == "get_session_key":
            return httpx.Response(200, json={"id": body["id"], "result": "k", "error": None})
        error = "unknown method or incorrect parameters"
        return httpx.Response(200, json={"id": body["id"], "result": None, "error": error})

    respx.post(URL).mock(side_effect=respond)
    with pytest.raises(FatalError, match="unknown method or incorrect parameters"):
        client().call("no_such_method")


@respx.mock
def test_429_is_retried_after_retry_after_without_really_sleeping() -> None:
    replies = iter([httpx.Response(429, headers={"Retry-After": "3"}), None, None])

    def handler(method: str, params: list[Any]) -> Any:
        reply = next(replies)
        if reply is not None:
            return reply
        return "k" if method == "get_session_key" else [{"tid": "1"}]

    respx.post(URL).mock(side_effect=rpc_server(handler))
    sleeps: list[float] = []
    assert client(sleeps).call("list_participants", 1) == [{"tid": "1"}]
    assert sleeps == [3.0]


@respx.mock
def test_creating_call_is_not_retried_in_call_after_a_lost_reply() -> None:
    """A 502 after add_participants may hide a stored participant: the caller must look first."""
    calls: list[str] = []

    def handler(method: str, params: list[Any]) -> Any:
        calls.append(method)
        if method == "get_session_key":
            return "k"
        return httpx.Response(502, text="bad gateway")

    respx.post(URL).mock(side_effect=rpc_server(handler))
    with pytest.raises(RetriableError, match="not retried in-call"):
        client().call("add_participants", 1, [{}], True, idempotent=False)
    assert calls == ["get_session_key", "add_participants"]


@respx.mock
def test_creating_call_is_retried_after_429() -> None:
    replies = iter([httpx.Response(429, headers={"Retry-After": "1"}), None])

    def handler(method: str, params: list[Any]) -> Any:
        if method == "get_session_key":
            return "k"
        reply = next(replies)
        return reply if reply is not None else {"1": {"status": "OK"}, "status": "0 left to send"}

    respx.post(URL).mock(side_effect=rpc_server(handler))
    result = client().call("invite_participants", 1, [1], True, idempotent=False)
    assert result["status"] == "0 left to send"


@respx.mock
def test_close_releases_the_session_key() -> None:
    methods: list[tuple[str, list[Any]]] = []

    def handler(method: str, params: list[Any]) -> Any:
        methods.append((method, params))
        return "k" if method == "get_session_key" else "OK"

    respx.post(URL).mock(side_effect=rpc_server(handler))
    rpc = client()
    rpc.session_key()
    rpc.close()
    assert methods[-1] == ("release_session_key", ["k"])


def test_status_helpers() -> None:
    assert is_invalid_session({"status": "Invalid S ession Key"})
    assert is_invalid_session("Invalid session key")
    assert not is_invalid_session({"status": "No permission"})
    assert not is_error_status("OK")
    assert not is_error_status("3 left to send")
    assert is_error_status("Error: No candidate tokens")
    assert not is_error_status(None)
