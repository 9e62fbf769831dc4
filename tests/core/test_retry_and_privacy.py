"""The retry factory honours Retry-After and retries only what is retriable; masking."""

from __future__ import annotations

import pytest

from core.errors import FatalError, RetriableError
from core.privacy import email_key, mask_email, mask_name, mask_phone, mask_pii_text, phone_key
from core.retry import call_with_retry, make_retrying, outbox_delay


def test_retry_waits_what_the_remote_asked_then_succeeds() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RetriableError("429 Too Many Requests", retry_after=2.0)
        return "ok"

    assert call_with_retry(flaky, make_retrying(sleep=waits.append)) == "ok"
    assert waits == [2.0, 2.0]


def test_retry_gives_up_after_the_last_attempt() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise RetriableError("503")

    with pytest.raises(RetriableError):
        call_with_retry(down, make_retrying(attempts=3, sleep=lambda _: None))
    assert len(calls) == 3


def test_fatal_errors_and_long_retry_after_are_not_retried_in_call() -> None:
    for exc in (FatalError("401 Unauthorized"), RetriableError("later", retry_after=3600)):
        calls: list[Exception] = []

        def fail(exc: Exception = exc, calls: list[Exception] = calls) -> None:
            calls.append(exc)
            raise exc

        with pytest.raises(type(exc)):
            call_with_retry(fail, make_retrying(sleep=lambda _: None))
        assert calls == [exc]


def test_outbox_delay_is_exponential_capped_and_honours_retry_after() -> None:
    assert [outbox_delay(n, 30, 3600, None) for n in (1, 2, 3)] == [30, 60, 120]
    assert outbox_delay(10, 30, 3600, None) == 3600
    assert outbox_delay(1, 30, 3600, 600) == 600


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+86 138 1234 5678", "+86 138 **** 5678"),
        ("13812345678", "138****5678"),
        ("1234", "****"),
        (None, None),
    ],
)
def test_mask_phone_keeps_prefix_and_last_four(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


def test_mask_email_and_name() -> None:
    assert mask_email("zhang.wei@example.com") == "z***@example.com"
    assert mask_email("李娜@example.cn") == "李***@example.cn"
    assert mask_name("张伟") == "张*"
    assert mask_name("Anna Smith") == "A*** S***"


def test_contact_keys_compare_numbers_written_differently() -> None:
    assert phone_key("+86 138-1234-5678") == phone_key("13812345678") == "13812345678"
    assert phone_key("0086 13812345678") == "13812345678"
    assert email_key(" Zhang.Wei@Example.com ") == "zhang.wei@example.com"
    assert email_key("not-an-address") is None


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call me at +8613912345678, x@example.com", "call me at +86139****5678, x***@example.com"),
        ("手机13812345678，谢谢", "手机138****5678，谢谢"),
        ("mobile 138-1234-5678", "mobile 138-****-5678"),
        ("+86 138 1234 5678 after six", "+86 138 **** 5678 after six"),
        ("landline 021-5555-0101", "landline 021-****-0101"),
        ("GET /x?phone=%2B8613912345678", "GET /x?phone=%2B86*******5678"),
        ("ITSD-1234 at 2026-10-08T09:30:00+08:00, 18000 s, id 1733561234567", None),
        (None, None),
    ],
)
def test_mask_pii_text_masks_phones_and_emails_inside_text(
    text: str | None, masked: str | None
) -> None:
    assert mask_pii_text(text) == (text if masked is None else masked)


def _stderr_of(logger_name: str, *args: object, exc: BaseException | None = None) -> str:
    """What configure()'s stderr handler writes for one record of ``logger_name``."""
    import io
    import logging

    from core.logs import configure

    configure("INFO")
    out = io.StringIO()
    root = logging.getLogger()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logger = logging.getLogger(logger_name)
    if exc is not None:
        try:
            raise exc
        except type(exc):
            logger.exception(*args)  # type: ignore[arg-type]
    else:
        logger.warning(*args)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize(
    "name", ["uvicorn", "uvicorn.error", "uvicorn.access", "rq.worker", "httpx", "httpcore", "x"]
)
def test_every_logger_goes_through_the_masking(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-0123456789")
    logging.getLogger(name).addHandler(logging.NullHandler())  # a library's own handler
    line = _stderr_of(name, "%s - %s %d", "+8613912345678 x@example.com", "tok-0123456789", 500)
    assert "+86139****5678 x***@example.com - *** 500" in line
    assert "12345678" not in line and "tok-0123456789" not in line


def test_tracebacks_in_log_records_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-0123456789")
    exc = ValueError("row {'phone': '13812345678', 'email': 'li.na@example.cn'} tok-0123456789")
    text = _stderr_of("qloop.api", "unexpected error", exc=exc)
    assert "Traceback" in text and "ValueError" in text
    assert "13812345678" not in text and "li.na@" not in text and "tok-0123456789" not in text


def test_runtime_call_retries_like_the_retry_policy_after_a_plain_first_call() -> None:
    """``rt.call`` calls once without the retry machinery; after a retriable failure it
    waits and tries exactly as ``call_with_retry`` does."""
    from core.runtime import Runtime

    cases: list[list[Exception | str]] = [
        ["ok"],
        [RetriableError("429", retry_after=2.0), RetriableError("429", retry_after=5.0), "ok"],
        [RetriableError("503", retry_after=1.0)] * 5,
        [FatalError("401")],
        [RetriableError("later", retry_after=3600)],
    ]
    for answers in cases:
        outcomes: list[tuple[str, int, list[float]]] = []
        for caller in ("policy", "runtime"):
            waits: list[float] = []
            calls: list[int] = []

            def fn(answers: list[Exception | str] = answers, calls: list[int] = calls) -> str:
                calls.append(1)
                answer = answers[len(calls) - 1]
                if isinstance(answer, Exception):
                    raise answer
                return answer

            rt = Runtime.__new__(Runtime)  # rt.call reads only its sleep
            rt.sleep = waits.append
            result: str
            try:
                if caller == "policy":
                    result = call_with_retry(fn, make_retrying(sleep=waits.append))
                else:
                    result = rt.call(fn)
            except Exception as exc:
                result = type(exc).__name__ + str(exc)
            outcomes.append((result, len(calls), waits))
        assert outcomes[0] == outcomes[1], answers
    assert outcomes[0] == ("RetriableErrorlater", 1, [])
