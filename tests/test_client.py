"""connector.endpoint.client.EndpointClient over httpx.MockTransport: retries, errors, streaming, headers.

No real sleep: the client gets an async ``sleep`` that records the delays it is asked for.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connector import errors
from connector.config.load import load_config
from connector.endpoint.client import EndpointClient
from connector.endpoint.retry_policy import retry_after_seconds
from tests.conftest import chat_reply, client_for, dialect_of, mock_transport, template_for

# A safety net only (no test waits on the clock): a broken cancel would hang, not fail.
pytestmark = pytest.mark.timeout(10)

KEY = "sk-test-key-abcdef"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    """An injected sleep that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Recorder:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def make_client(handler: Handler, **config: Any) -> tuple[EndpointClient, Sleeps]:
    raw = {"url": "http://127.0.0.1:9/v1", "api_key": KEY, "model": "m", "prompt": "{{t}}",
           "input": {"rows": [{"t": "x"}]}, "max_retries": 3, **config}
    raw = {k: v for k, v in raw.items() if v is not None}  # None: leave the field out
    sleeps = Sleeps()
    transport = mock_transport(handler)(1)
    return client_for(load_config(raw), transport, sleep=sleeps), sleeps


def ok(content: str = "hello") -> httpx.Response:
    return httpx.Response(200, json=chat_reply(content))


# Plain completions ------------------------------------------------------------------


async def test_plain_completion() -> None:
    rec = Recorder(ok("answer"))
    client, sleeps = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "answer"
    assert completion.attempts == 1
    assert completion.ttft_ms is None
    assert completion.latency_ms >= 0
    assert sleeps.delays == []
    assert len(rec.requests) == 1
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:9/v1/chat/completions"
    assert json.loads(request.content) == BODY


async def test_authorization_and_extra_headers_are_sent() -> None:
    rec = Recorder(ok())
    client, _ = make_client(rec, headers={"X-Tenant": "acme", "OpenAI-Organization": "org-1"})
    await client.complete(BODY)
    headers = rec.requests[0].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["x-tenant"] == "acme"
    assert headers["openai-organization"] == "org-1"
    assert headers["content-type"] == "application/json"


async def test_no_authorization_header_without_key() -> None:
    rec = Recorder(ok())
    client, _ = make_client(rec, api_key=None)
    await client.complete(BODY)
    assert "authorization" not in rec.requests[0].headers


# Retries ------------------------------------------------------------------------------


async def test_429_with_retry_after_then_200_sleeps_at_least_retry_after() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "7"},
                                  json={"error": {"message": "slow down"}}), ok("done"))
    client, sleeps = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.reply["choices"][0]["message"]["content"] == "done"
    assert completion.attempts == 2
    assert len(rec.requests) == 2
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 7


async def test_retry_after_ms_is_honoured_in_milliseconds() -> None:
    rec = Recorder(httpx.Response(429, headers={"retry-after-ms": "2500"}), ok())
    client, sleeps = make_client(rec)
    await client.complete(BODY)
    assert len(sleeps.delays) == 1
    # backoff before the 2nd attempt is at most 0.5 s, so the header decides the wait
    assert sleeps.delays[0] == pytest.approx(2.5)


async def test_retry_after_ms_wins_over_retry_after() -> None:
    rec = Recorder(httpx.Response(503, headers={"retry-after-ms": "1200", "retry-after": "60"}), ok())
    client, sleeps = make_client(rec)
    await client.complete(BODY)
    assert sleeps.delays == [pytest.approx(1.2)]


@pytest.mark.parametrize("headers", [{"Retry-After": "86400"}, {"Retry-After": "3600"}, {"Retry-After": "1e400"},
                                     {"retry-after-ms": "1e12"}])
async def test_a_wait_longer_than_max_wait_seconds_stops_instead_of_sleeping(headers: dict[str, str]) -> None:
    rec = Recorder(httpx.Response(429, headers=headers), ok())
    client, sleeps = make_client(rec)
    with pytest.raises(errors.WaitTooLong) as info:
        await client.complete(BODY)
    assert sleeps.delays == [] and len(rec.requests) == 1  # not waited for, not asked again
    assert "max_wait_seconds (300 s)" in info.value.message and "Retry-After on a 429" in info.value.message
    assert "run it again" in info.value.message.lower()
    assert info.value.failure_type == "transient_error"
    assert not isinstance(info.value, errors.EndpointError)  # not a row failure: it ends the sync


async def test_a_wait_within_max_wait_seconds_is_waited_for() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "90"}), ok())
    client, sleeps = make_client(rec, max_wait_seconds=120)
    await client.complete(BODY)
    assert sleeps.delays == [90.0]


async def test_unreadable_retry_after_values_are_not_waits() -> None:
    assert retry_after_seconds({"retry-after": "nan"}) is None
    assert retry_after_seconds({"retry-after": "1e400"}) == float("inf")
    assert retry_after_seconds({"retry-after-ms": "1e12"}) == 1e9


async def test_backoff_without_retry_after_is_bounded_and_jittered() -> None:
    rec = Recorder(httpx.Response(500), httpx.Response(500), httpx.Response(500), ok())
    client, sleeps = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.attempts == 4
    assert len(sleeps.delays) == 3
    # full jitter over 0.5 * 2**(n-1): 0.5, 1, 2
    for delay, cap in zip(sleeps.delays, [0.5, 1.0, 2.0], strict=True):
        assert 0 <= delay <= cap


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
async def test_retryable_status_retried_up_to_max_retries_then_raised(status: int) -> None:
    rec = Recorder(httpx.Response(status, json={"error": {"message": "nope", "code": "x"}}))
    client, sleeps = make_client(rec, max_retries=2)
    with pytest.raises(errors.HTTPStatusError) as info:
        await client.complete(BODY)
    assert info.value.status == status
    assert info.value.attempts == 3
    assert len(rec.requests) == 3
    assert len(sleeps.delays) == 2
    assert f"({status})" in str(info.value) and "nope" in str(info.value)
    assert info.value.failure_type == "transient_error"


async def test_connection_error_retried_then_raised_with_attempts() -> None:
    rec = Recorder(httpx.ConnectError("connection refused"))
    client, sleeps = make_client(rec, max_retries=3)
    with pytest.raises(errors.ConnectFailed) as info:
        await client.complete(BODY)
    assert info.value.attempts == 4
    assert len(rec.requests) == 4
    assert len(sleeps.delays) == 3
    assert "127.0.0.1:9" in str(info.value)


async def test_read_timeout_retried_then_success() -> None:
    rec = Recorder(httpx.ReadTimeout("slow"), ok("late"))
    client, sleeps = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.attempts == 2
    assert len(sleeps.delays) == 1


async def test_max_retries_zero_means_one_attempt() -> None:
    rec = Recorder(httpx.Response(503))
    client, sleeps = make_client(rec, max_retries=0)
    with pytest.raises(errors.HTTPStatusError) as info:
        await client.complete(BODY)
    assert info.value.attempts == 1
    assert len(rec.requests) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_not_retried(status: int) -> None:
    rec = Recorder(httpx.Response(status, json={"error": {"message": "bad thing"}}), ok())
    client, sleeps = make_client(rec)
    with pytest.raises(errors.HTTPStatusError) as info:
        await client.complete(BODY)
    assert info.value.status == status
    assert info.value.attempts == 1
    assert info.value.retryable is False
    assert info.value.failure_type == "config_error"
    assert len(rec.requests) == 1
    assert sleeps.delays == []
    assert "bad thing" in str(info.value)


async def test_401_is_auth_and_does_not_leak_the_key() -> None:
    rec = Recorder(httpx.Response(401, json={"error": {"message": "Incorrect API key"}}))
    client, _ = make_client(rec)
    with pytest.raises(errors.HTTPStatusError) as info:
        await client.complete(BODY)
    assert info.value.is_auth
    assert "API key rejected (401)" in str(info.value)
    assert KEY not in str(info.value)


async def test_tls_failure_not_retried() -> None:
    rec = Recorder(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    client, sleeps = make_client(rec)
    with pytest.raises(errors.TLSFailed) as info:
        await client.complete(BODY)
    assert info.value.attempts == 1
    assert sleeps.delays == []


# Bad replies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"id": "x"}', "no 'choices'"),
        (b'{"error": {"message": "quota exceeded"}}', "quota exceeded"),
    ],
)
async def test_unusable_200_body_is_bad_reply(content: bytes, fragment: str) -> None:
    rec = Recorder(httpx.Response(200, content=content))
    client, _ = make_client(rec, max_retries=0)
    with pytest.raises(errors.BadReply, match=fragment):
        await client.complete(BODY)


# Streaming ---------------------------------------------------------------------------


def sse(*payloads: Any) -> bytes:
    return b"".join(
        b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\r\n\r\n"
        for p in payloads
    )


def delta(content: str | None = None, finish: str | None = None, **d: Any) -> dict[str, Any]:
    if content is not None:
        d["content"] = content
    return {"id": "s1", "model": "stream-model", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


USAGE = {"id": "s1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3,
                                              "total_tokens": 12}}
FULL_STREAM = sse(delta("", role="assistant"), delta("Bon"), delta("jour é👍"), delta(finish="stop"),
                  USAGE, b"[DONE]")


def streaming(data: bytes, chunk: int = 7) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(data), chunk):
                yield data[i:i + chunk]

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return handler


def streaming_body(config: Any) -> dict[str, Any]:
    return dialect_of(config).build(template_for(config).render({"t": "x"}))


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 10_000])
async def test_stream_assembles_content_finish_reason_usage_and_ttft(chunk: int) -> None:
    rec = Recorder(streaming(FULL_STREAM, chunk))
    client, _ = make_client(rec, stream=True)
    completion = await client.complete({**BODY, "stream": True})
    reply = completion.reply
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour é👍"}
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"] == USAGE["usage"]
    assert reply["model"] == "stream-model"
    assert completion.ttft_ms is not None
    assert 0 <= completion.ttft_ms <= completion.latency_ms
    assert completion.attempts == 1


async def test_streaming_request_body_asks_for_usage() -> None:
    rec = Recorder(streaming(FULL_STREAM))
    client, _ = make_client(rec, stream=True)
    config = load_config({"url": "http://127.0.0.1:9/v1", "model": "m", "prompt": "{{t}}",
                          "input": {"rows": [{"t": "x"}]}, "stream": True})
    await client.complete(streaming_body(config))
    sent = rec.bodies()[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "m"
    assert sent["messages"] == [{"role": "user", "content": "x"}]


async def test_non_streaming_request_body_has_no_stream_fields() -> None:
    config = load_config({"url": "http://127.0.0.1:9/v1", "model": "m", "prompt": "{{t}}",
                          "input": {"rows": [{"t": "x"}]}})
    body = streaming_body(config)
    assert "stream" not in body and "stream_options" not in body


async def test_stream_with_finish_reason_but_no_done_is_complete() -> None:
    data = sse(delta("ok"), delta(finish="length"))
    client, _ = make_client(Recorder(streaming(data)), stream=True, max_retries=0)
    completion = await client.complete({**BODY, "stream": True})
    assert completion.reply["choices"][0]["finish_reason"] == "length"
    assert completion.reply["choices"][0]["message"]["content"] == "ok"


async def test_stream_cut_before_finish_reason_and_done_raises_bad_reply() -> None:
    data = sse(delta("", role="assistant"), delta("partial ans"))
    rec = Recorder(streaming(data))
    client, _ = make_client(rec, stream=True, max_retries=0)
    with pytest.raises(errors.BadReply, match="stream ended before"):
        await client.complete({**BODY, "stream": True})
    assert len(rec.requests) == 1


async def test_stream_cut_mid_event_raises_bad_reply() -> None:
    data = sse(delta("partial"))[:-3] + b'data: {"choices": [{"delta": {"cont'
    client, _ = make_client(Recorder(streaming(data)), stream=True, max_retries=0)
    with pytest.raises(errors.BadReply):
        await client.complete({**BODY, "stream": True})


async def test_truncated_stream_is_retried_and_the_retry_can_succeed() -> None:
    rec = Recorder(streaming(sse(delta("part"))), streaming(FULL_STREAM))
    client, sleeps = make_client(rec, stream=True, max_retries=2)
    completion = await client.complete({**BODY, "stream": True})
    assert completion.attempts == 2
    assert completion.reply["choices"][0]["message"]["content"] == "Bonjour é👍"
    assert len(sleeps.delays) == 1


async def test_error_event_mid_stream_is_bad_reply() -> None:
    data = sse(delta("x"), {"error": {"message": "overloaded", "type": "server_error"}})
    client, _ = make_client(Recorder(streaming(data)), stream=True, max_retries=0)
    with pytest.raises(errors.BadReply, match="overloaded"):
        await client.complete({**BODY, "stream": True})


async def test_connection_reset_mid_stream_is_stream_broken() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield sse(delta("half"))
            raise httpx.ReadError("connection reset by peer")

        return httpx.Response(200, content=body())

    rec = Recorder(handler)
    client, sleeps = make_client(rec, stream=True, max_retries=1)
    with pytest.raises(errors.StreamBroken) as info:
        await client.complete({**BODY, "stream": True})
    assert info.value.attempts == 2
    assert len(rec.requests) == 2
    assert len(sleeps.delays) == 1


# Models ------------------------------------------------------------------------------


async def test_list_models_returns_ids() -> None:
    rec = Recorder(httpx.Response(200, json={"object": "list", "data": [
        {"id": "gpt-a", "object": "model"}, {"id": "gpt-b", "object": "model"}]}))
    client, _ = make_client(rec, url="http://127.0.0.1:9/v1/chat/completions")
    assert await client.list_models() == ["gpt-a", "gpt-b"]
    request = rec.requests[0]
    assert request.method == "GET"
    assert str(request.url) == "http://127.0.0.1:9/v1/models"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert "content-type" not in request.headers


async def test_list_models_ollama_style_names() -> None:
    rec = Recorder(httpx.Response(200, json={"models": [{"name": "llama3"}, {"model": "qwen"}]}))
    client, _ = make_client(rec)
    assert await client.list_models() == ["llama3", "qwen"]


@pytest.mark.parametrize("status", [404, 405])
async def test_list_models_none_when_endpoint_missing(status: int) -> None:
    client, _ = make_client(Recorder(httpx.Response(status)))
    assert await client.list_models() is None


async def test_list_models_auth_error_raised() -> None:
    client, _ = make_client(Recorder(httpx.Response(401, json={"error": {"message": "bad key"}})))
    with pytest.raises(errors.HTTPStatusError) as info:
        await client.list_models()
    assert info.value.status == 401


async def test_list_models_garbage_is_bad_reply() -> None:
    client, _ = make_client(Recorder(httpx.Response(200, content=b"<html>")))
    with pytest.raises(errors.BadReply, match="model list"):
        await client.list_models()


# retry_after_seconds -------------------------------------------------------------------


def test_retry_after_seconds_forms() -> None:
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 <= (retry_after_seconds({"retry-after": future}) or 0) <= 121
    past = email.utils.formatdate(time.time() - 120, usegmt=True)
    assert retry_after_seconds({"retry-after": past}) == 0.0


@pytest.mark.parametrize("value", ["soon", "Wed, 99 Foo 2024", "", "  "])
def test_retry_after_garbage_is_ignored_not_raised(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}) is None


async def test_429_with_unparseable_retry_after_is_still_retried() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "soon"}), ok("fine"))
    client, sleeps = make_client(rec)
    completion = await client.complete(BODY)
    assert completion.attempts == 2
    assert len(sleeps.delays) == 1 and 0 <= sleeps.delays[0] <= 0.5
