"""Reasoning models: ``max_completion_tokens`` where OpenAI requires it, and its documented 400
("Use 'max_completion_tokens' instead") answered by sending the request once more, renamed, with a
LOG line, instead of failing every row."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import read_through

pytestmark = pytest.mark.timeout(30)

# OpenAI's error for max_tokens sent to a reasoning model (o1 and later), as its API returns it.
REFUSAL = {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                "Use 'max_completion_tokens' instead.",
                     "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}
REPLY = {"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 9, "completion_tokens": 140, "total_tokens": 149,
                   "completion_tokens_details": {"reasoning_tokens": 128}}}


def _config(model: str, rows: int = 1) -> dict[str, Any]:
    return {"api_compatibility": "openai_chat_completions", "api_key": "sk-test-reasoning-0123", "model": model,
            "prompt": "Say {{t}}", "input": {"rows": [{"t": str(i)} for i in range(rows)]},
            "parameters": {"max_tokens": 500}, "max_retries": 0, "cache": {"enabled": False}, "concurrency": 1}


class RefusesMaxTokens:
    """A server that, like OpenAI's reasoning models, refuses max_tokens with a 400."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if "max_tokens" in body:
            return httpx.Response(400, json=REFUSAL)
        return httpx.Response(200, json=REPLY)


def test_the_400_asking_for_max_completion_tokens_is_answered_by_sending_it_so() -> None:
    server = RefusesMaxTokens()
    messages, error = read_through(_config("my-deployment", rows=3), server)
    assert error is None, error
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert [r["_status"] for r in records] == ["ok"] * 3
    assert records[0]["_reasoning_tokens"] == 128 and records[0]["_completion_tokens"] == 140
    # Refused once; sent again renamed; every later row goes renamed at once.
    assert ["max_tokens" in b for b in server.bodies] == [True, False, False, False]
    assert all(b.get("max_completion_tokens") == 500 for b in server.bodies[1:])
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert any("asked for max_completion_tokens: sent so from now on" in line for line in logs)


@pytest.mark.parametrize("model", ["o3-mini", "o1", "gpt-5-mini", "openai/o4-mini", "gpt-5.1"])
def test_reasoning_models_get_max_completion_tokens_from_the_start(model: str) -> None:
    server = RefusesMaxTokens()
    _messages, error = read_through(_config(model), server)
    assert error is None and len(server.bodies) == 1
    assert server.bodies[0]["max_completion_tokens"] == 500 and "max_tokens" not in server.bodies[0]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "llama-3-o1x", "solar-pro"])
def test_other_models_keep_max_tokens(model: str) -> None:
    server = RefusesMaxTokens()
    read_through(_config(model), server)
    assert server.bodies[0].get("max_tokens") == 500


def test_another_400_is_not_sent_again() -> None:
    bodies: list[bytes] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(400, json={"error": {"message": "Invalid value for temperature", "code": "bad"}})

    messages, _error = read_through(_config("gpt-4o"), refuse)
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert len(bodies) == 1 and records[0]["_error_class"] == "bad_request"
