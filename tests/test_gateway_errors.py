"""A gateway's deviations from OpenAI's error statuses, read as what they mean.

The bodies and headers are LiteLLM's proxy (1.108.7) answers, copied from the real proxy
in front of llama.cpp (tests/test_live_litellm.py runs the same cases live):

- a key other than the master key, on a proxy without a database: 400 "No connected db.";
- an unknown model: 400 "Invalid model name passed in model=...";
- a model group over its ``rpm``: 429 with no ``Retry-After``, only ``llm_provider-retry-after``.

In-process, over httpx.MockTransport: ``check``'s CONNECTION_STATUS, ``read``'s stop at the
first row (as for a 401/404), and the wait the client takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector import errors
from connector.airbyte import commands
from connector.config.load import load_config
from connector.endpoint.classify import classify, is_fatal, rejects_key
from connector.endpoint.retry_policy import retry_after_seconds
from tests.conftest import chat_reply, client_for, mock_transport, read_through

KEY = "sk-gateway-wrong-key-4242"
NO_DB = {"error": {"message": "No connected db.", "type": "no_db_connection", "param": None, "code": "400"}}
INVALID_MODEL = {"error": {
    "message": "/chat/completions: Invalid model name passed in model=nope. "
               "Call `/v1/models` to view available models for your key.",
    "type": "invalid_request_error", "param": None, "code": "400"}}
INVALID_MODEL_MESSAGES = {"type": "error", "error": {
    "type": "invalid_request_error",
    "message": "anthropic_messages: Invalid model name passed in model=nope. "
               "Call `/v1/models` to view available models for your key."}}
RPM_429 = {"error": {
    "message": "litellm.RateLimitError: No deployments available for selected model. Passed model=limited.",
    "type": "throttling_error", "param": None, "code": "429"}}
MODELS = {"data": [{"id": "smollm2-135m-instruct", "object": "model"}, {"id": "limited", "object": "model"}]}

Handler = Callable[[httpx.Request], httpx.Response]


def config(**extra: Any) -> dict[str, Any]:
    return {"url": "http://gateway.internal:4000/v1", "api_key": KEY, "model": "nope",
            "prompt": "Say {{text}}", "input": {"rows": [{"text": f"t{i}"} for i in range(5)]},
            "max_retries": 0, "cache": {"enabled": False}, **extra}


def gateway(chat: httpx.Response, models: httpx.Response | None = None) -> tuple[Handler, list[str]]:
    """A handler answering GET /models and every POST with the given responses; it logs paths."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return models or httpx.Response(200, json=MODELS)
        return chat
    return handler, seen


def check(raw: dict[str, Any], handler: Handler) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(raw, mock_transport(handler))]

    (message,) = asyncio.run(collect())
    status = dict(message["connectionStatus"])
    assert KEY not in status["message"]
    return status


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, NO_DB, "auth"),
    (400, INVALID_MODEL, "not_found"),
    (400, INVALID_MODEL_MESSAGES, "not_found"),
    (429, RPM_429, "rate_limit"),
    (400, {"error": {"message": "temperature: must be <= 2"}}, "bad_request"),  # a plain 400 stays one
])
def test_gateway_statuses_are_classified_by_what_they_mean(status: int, body: Any, expected: str) -> None:
    import json

    assert rejects_key(status, json.dumps(body)) == (expected == "auth")
    error = errors.HTTPStatusError("x", status=status, body=json.dumps(body))
    assert classify(error) == expected
    assert is_fatal(error) == (expected in ("auth", "not_found"))


def test_check_reads_no_connected_db_as_a_rejected_key() -> None:
    handler, seen = gateway(httpx.Response(400, json=NO_DB), models=httpx.Response(400, json=NO_DB))
    status = check(config(model="smollm2-135m-instruct"), handler)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("API key rejected (400) by gateway.internal:4000: check api_key.")
    assert "No connected db." in status["message"]
    assert seen == ["GET /v1/models"], "the rejected /models answer decides: no completion is paid for"


def test_check_reads_invalid_model_name_as_model_not_found_with_the_offered_list() -> None:
    handler, _ = gateway(httpx.Response(400, json=INVALID_MODEL))
    status = check(config(), handler)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("Model 'nope' not found at gateway.internal:4000 (400).")
    assert "The server offers: smollm2-135m-instruct, limited." in status["message"]


@pytest.mark.parametrize(("body", "meaning"), [(NO_DB, "API key rejected (400)"),
                                               (INVALID_MODEL, "model not found: request rejected (400)")])
def test_read_stops_at_the_first_row_as_for_401_and_404(body: Any, meaning: str) -> None:
    handler, seen = gateway(httpx.Response(400, json=body))
    messages, exc = read_through(config(concurrency=1), handler)
    assert exc is not None and exc.failure_type == "config_error"
    assert exc.message.startswith(meaning), exc.message
    assert not [m for m in messages if m["type"] == "RECORD"]
    assert len(seen) == 1, "one request, not one per row"


def test_rate_limit_429_waits_for_llm_provider_retry_after() -> None:
    assert retry_after_seconds({"llm_provider-retry-after": "60"}) == 60.0
    assert retry_after_seconds({"retry-after": "2", "llm_provider-retry-after": "60"}) == 2.0
    delays: list[float] = []
    answers = [httpx.Response(429, json=RPM_429, headers={"llm_provider-retry-after": "60"}),
               httpx.Response(200, json=chat_reply("fine"))]

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async def complete() -> int:
        client = client_for(load_config(config(max_retries=1)),
                                mock_transport(lambda _: answers.pop(0))(1), sleep=sleep)
        return (await client.complete({"model": "limited", "messages": [{"role": "user", "content": "x"}]})).attempts

    assert asyncio.run(complete()) == 2
    assert delays == [60.0]
