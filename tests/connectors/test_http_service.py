"""HttpService: error mapping, Retry-After, in-call retries, host budget, no secrets in errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from connectors.http import HostBudget, HttpService, parse_retry_after
from core.errors import FatalError, RetriableError

BASE = "https://itsm.example.test/api"


def service(waits: list[float], **kwargs: object) -> HttpService:
    return HttpService(
        "itsm",
        BASE,
        headers={"Authorization": "Bearer s3cr3t-token"},
        sleep=waits.append,
        **kwargs,  # type: ignore[arg-type]
    )


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@respx.mock
def test_429_is_retried_after_the_wait_the_server_asked() -> None:
    route = respx.get(f"{BASE}/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"}),
            httpx.Response(503, headers={"Retry-After": "1"}),
            httpx.Response(200, json={"items": [1, 2]}),
        ]
    )
    waits: list[float] = []
    assert service(waits).get_json("/items") == {"items": [1, 2]}
    assert route.call_count == 3
    assert waits == [3.0, 1.0]


@respx.mock
def test_retries_give_up_with_a_retriable_error_naming_the_call() -> None:
    respx.get(f"{BASE}/items").mock(return_value=httpx.Response(502, text="bad gateway"))
    waits: list[float] = []
    with pytest.raises(RetriableError) as err:
        service(waits, attempts=3).get_json("/items", params={"token": "abc"})
    assert len(waits) == 2
    assert "itsm: GET /items: HTTP 502: bad gateway" in str(err.value)
    assert err.value.status == 502  # type: ignore[attr-defined]


@respx.mock
def test_4xx_fails_fast_with_the_server_message_and_no_secret() -> None:
    route = respx.post(f"{BASE}/issue").mock(
        return_value=httpx.Response(400, json={"errorMessages": ["Field 'summary' is required"]})
    )
    waits: list[float] = []
    with pytest.raises(FatalError) as err:
        service(waits).post_json("/issue", {"x": 1})
    assert route.call_count == 1 and waits == []
    text = str(err.value)
    assert "HTTP 400" in text and "summary" in text and "s3cr3t" not in text


@respx.mock
def test_connection_failure_is_retriable_and_tls_failure_is_fatal() -> None:
    respx.get(f"{BASE}/a").mock(side_effect=httpx.ConnectError("connection refused"))
    respx.get(f"{BASE}/b").mock(
        side_effect=httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    waits: list[float] = []
    svc = service(waits, attempts=2)
    with pytest.raises(RetriableError, match="cannot connect"):
        svc.get_json("/a")
    with pytest.raises(FatalError, match="TLS error"):
        svc.get_json("/b")


@respx.mock
def test_a_reply_that_is_not_json_is_retriable() -> None:
    respx.get(f"{BASE}/page").mock(return_value=httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(RetriableError, match="not JSON"):
        service([], attempts=1).get_json("/page")


def test_host_budget_spaces_requests_and_is_shared_per_host() -> None:
    waits: list[float] = []
    budget = HostBudget(rate=10)
    for _ in range(3):
        budget.acquire(waits.append)
    # the first goes at once; the next two wait ~0.1 s and ~0.2 s for their slots
    assert len(waits) == 2
    assert 0.05 < waits[0] <= 0.1 and 0.15 < waits[1] <= 0.2
    a = HostBudget.for_host("shared.example.test:443", 50)
    b = HostBudget.for_host("shared.example.test:443", 20)
    assert a is b and a.rate == 20  # the strictest budget wins
    assert HostBudget(0).rate == 0  # unlimited never waits
    unlimited: list[float] = []
    HostBudget(0).acquire(unlimited.append)
    assert unlimited == []


@respx.mock
def test_a_post_is_not_retried_after_the_server_may_have_acted() -> None:
    route = respx.post(f"{BASE}/ticket").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(201, json={"id": 1}),
        ]
    )
    waits: list[float] = []
    with pytest.raises(RetriableError, match="HTTP 502"):
        service(waits).post_json("/ticket", {"name": "x"})
    # the 429 was retried (nothing was done), the 502 was not (the ticket may exist)
    assert route.call_count == 2 and waits == [2.0]


@respx.mock
def test_a_post_that_could_not_connect_is_retried() -> None:
    route = respx.post(f"{BASE}/ticket").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201, json={"id": 7})]
    )
    assert service([]).post_json("/ticket", {"name": "x"}) == {"id": 7}
    assert route.call_count == 2


@respx.mock
def test_a_read_only_post_may_be_marked_idempotent() -> None:
    route = respx.post(f"{BASE}/search").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"issues": []})]
    )
    assert service([]).post_json("/search", {"jql": "x"}, idempotent=True) == {"issues": []}
    assert route.call_count == 2
