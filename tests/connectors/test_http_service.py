"""HttpService: error mapping, Retry-After, in-call retries, host budget, no secrets in errors."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from connectors.http import HostBudget, HostPaused, HttpService, json_loads, parse_retry_after
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


def test_json_bodies_parse_as_the_json_module_parses_them() -> None:
    """orjson parses what it can; what only ``json`` reads gives ``json``'s result."""
    page = '{"issues":[{"id":"10001","fields":{"summary":"VPN 断线","n":1.5e3}}],"isLast":true}'
    assert json_loads(page.encode()) == json.loads(page)
    assert json_loads(b'{"v": NaN}')["v"] != json_loads(b'{"v": NaN}')["v"]  # NaN, as json
    for big in (b"[123456789012345678901234567890]", b"[-9223372036854775809]"):
        assert json_loads(big) == json.loads(big) and isinstance(json_loads(big)[0], int)
    assert json_loads(b"[1e400]") == [float("inf")]
    assert json_loads('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    with pytest.raises(ValueError):
        json_loads(b"<html>not JSON</html>")


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


class _Server:
    """A transport: the first call to the host answers 429, the others 200; arrivals timed."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.arrivals: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()
        self.refused = threading.Event()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.arrivals.append((request.url.host, request.url.path, time.monotonic()))
            first = not self.refused.is_set() and request.url.host == "busy.example.test"
            self.refused.set()
        if first:
            return httpx.Response(429, headers={"Retry-After": self.retry_after})
        return httpx.Response(200, json={"ok": True})


def test_a_429_pauses_every_thread_calling_that_host_and_no_other_host() -> None:
    server = _Server(retry_after="1")
    transport = httpx.MockTransport(server.handler)
    busy = HttpService("a", "https://busy.example.test", transport=transport)
    busy_too = HttpService("b", "https://busy.example.test", transport=transport)  # same host
    calm = HttpService("c", "https://calm.example.test", transport=transport)
    started = time.monotonic()
    first = threading.Thread(target=busy.get_json, args=("/first",))
    first.start()
    assert server.refused.wait(5)
    time.sleep(0.05)  # the 429 is in: thread "first" now waits its Retry-After
    done: dict[str, float] = {}

    def call(svc: HttpService, path: str) -> None:
        svc.get_json(path)
        done[path] = time.monotonic() - started

    others = [
        threading.Thread(target=call, args=(busy_too, "/other-thread")),
        threading.Thread(target=call, args=(calm, "/other-host")),
    ]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    sent = {path: at - started for host, path, at in server.arrivals}
    assert done["/other-host"] < 0.5  # another host is not paused
    assert sent["/other-thread"] >= 0.95  # the other thread waited for the host's Retry-After
    assert [p for _, p, _ in server.arrivals].count("/first") == 2


def test_a_pause_longer_than_an_in_call_wait_fails_every_caller_without_sending() -> None:
    server = _Server(retry_after="120")
    transport = httpx.MockTransport(server.handler)
    waits: list[float] = []
    svc = HttpService("a", "https://busy.example.test", transport=transport, sleep=waits.append)
    with pytest.raises(RetriableError, match="HTTP 429"):
        svc.get_json("/first")  # Retry-After beyond the in-call maximum: the error goes up
    other = HttpService("b", "https://busy.example.test", transport=transport, sleep=waits.append)
    with pytest.raises(HostPaused, match=r"asked to wait 1[12]\d s") as err:
        other.get_json("/second")
    assert err.value.retry_after is not None and err.value.retry_after > 100
    assert [p for _, p, _ in server.arrivals] == ["/first"] and waits == []


def test_two_processes_share_a_host_pause_through_redis(redis_url: str) -> None:
    host = f"shared-{uuid.uuid4().hex[:8]}.example.test"
    server = _Server(retry_after="30")
    server.refused.set()  # this test decides the answers itself
    answers = iter([httpx.Response(429, headers={"Retry-After": "20"})])

    def handler(request: httpx.Request) -> httpx.Response:
        server.arrivals.append((request.url.host, request.url.path, time.monotonic()))
        return next(answers, httpx.Response(200, json={"ok": True}))

    transport = httpx.MockTransport(handler)
    waits_a: list[float] = []
    one = HttpService(
        "a", f"https://{host}", transport=transport, sleep=waits_a.append, redis_url=redis_url
    )
    with pytest.raises(RetriableError):
        one.send_once("GET", "/first")  # 429 Retry-After 20: the pause is now in Redis
    HostBudget.forget()  # what follows runs as another process would: nothing shared in memory
    waits_b: list[float] = []
    two = HttpService(
        "b", f"https://{host}", transport=transport, sleep=waits_b.append, redis_url=redis_url
    )
    assert two.budget is not one.budget
    assert 18 < two.budget.paused_for() <= 20
    assert two.get_json("/second") == {"ok": True}
    assert len(waits_b) == 1 and 18 < waits_b[0] <= 40  # its wait: the pause, plus a spread
    # without Redis the other process would not have known
    HostBudget.forget()
    alone = HttpService("c", f"https://{host}", transport=transport, sleep=waits_b.append)
    assert alone.budget.paused_for() == 0


def test_the_rate_budget_is_shared_through_redis(redis_url: str) -> None:
    host = f"rate-{uuid.uuid4().hex[:8]}.example.test"
    waits: list[float] = []
    budgets = []
    for _ in range(3):  # three processes, each with its own budget object
        HostBudget.forget()
        budgets.append(HostBudget.for_host(host, 2.0, redis_url))
    for budget in budgets:
        budget.acquire(waits.append)
    # 2 per second across the processes: the first at once, then slots 0.5 s and 1 s on
    assert len(waits) == 2 and 0.4 < waits[0] <= 0.5 and 0.9 < waits[1] <= 1.0


def test_without_redis_reachable_the_process_keeps_its_own_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = HostBudget.for_host("down.example.test", 0, "redis://127.0.0.1:1/0")
    waits: list[float] = []
    budget.pause(5)  # Redis refuses the connection: the pause is kept in the process
    assert 4 < budget.paused_for() <= 5
    budget.acquire(waits.append)
    assert len(waits) == 1 and 4 < waits[0] <= 10
    assert "Redis unavailable" in caplog.text


def test_a_read_response_is_freed_without_the_garbage_collector() -> None:
    """httpx binds a response's stream to the response (a cycle); once read it is unbound,
    so a page (and what is kept on it) goes as soon as its last user drops it."""
    import gc
    import weakref

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"page": [1, 2]}))
    svc = HttpService("itsm", BASE, transport=transport)
    response = svc.request("GET", "/items")
    assert response.json() == {"page": [1, 2]}
    assert response.read() == b'{"page":[1,2]}'  # the body stays readable once unbound
    assert list(response.iter_bytes()) == [response.content]
    gone = weakref.ref(response)
    gc.disable()
    try:
        del response
        assert gone() is None
    finally:
        gc.enable()
        svc.close()
