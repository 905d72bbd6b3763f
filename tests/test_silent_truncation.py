"""A server that cuts long prompts without saying so, as Ollama does at ``num_ctx``: the row is not
``ok`` but an error of class ``context_length`` naming ``num_ctx``; prompts that fit are untouched."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connector.answers.truncation import cut_at
from tests.conftest import read_through

pytestmark = pytest.mark.timeout(30)

NUM_CTX = 2048  # Ollama's default context size before 0.6 (4,096 since)


class CapsThePrompt:
    """Answers like Ollama's OpenAI-compatible API with num_ctx 2,048: a longer prompt is read only up
    to the cap, and the usage reports what was read (about four characters a token here)."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        tokens = len(json.dumps(body["messages"])) // 4
        read = min(tokens, NUM_CTX)
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": "llama3.2",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "a summary"},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": read, "completion_tokens": 3, "total_tokens": read + 3}}
        return httpx.Response(200, json=reply)


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    config = {"provider": "ollama", "model": "llama3.2", "prompt": "Summarise: {{t}}", "input": {"rows": rows},
              "max_retries": 0, "cache": {"enabled": False}}
    messages, error = read_through(config, CapsThePrompt())
    assert error is None, error
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def test_a_prompt_cut_at_num_ctx_is_an_error_that_names_num_ctx() -> None:
    short, long = {"t": "a short review"}, {"t": "word " * 4000}  # ~5,000 tokens against a cap of 2,048
    first, second = _records([short, long])
    assert first["_status"] == "ok" and first["_error"] is None
    assert (second["_status"], second["_error_class"], second["_prompt_tokens"]) == ("error", "context_length", 2048)
    assert "num_ctx" in second["_error"] and "2,048" in second["_error"]


@pytest.mark.parametrize(("reported", "chars", "cap"), [
    (2048, 20_000, 2048), (4096, 40_000, 4096), (4090, 40_000, 4096),  # cut, a few tokens kept for the answer
    (2048, 8_300, None),  # a prompt really about 2,048 tokens long
    (1900, 40_000, None),  # far below the estimate, but no round cap: another tokenizer, not a cut
    (None, 40_000, None),
])
def test_cut_at_a_round_cap_only_when_the_prompt_is_far_longer(reported: int | None, chars: int,
                                                              cap: int | None) -> None:
    assert cut_at(reported, chars) == cap


def _check(ps: httpx.Response) -> str:
    import asyncio

    from connector.airbyte import commands
    from tests.conftest import mock_transport

    def ollama(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/ps":  # Ollama's loaded models, with the context each was given
            return ps
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "llama3.2:latest"}]})
        return CapsThePrompt()(request)

    config = {"provider": "ollama", "model": "llama3.2", "prompt": "Summarise: {{t}}", "input": {"rows": [{"t": "x"}]}}

    async def status() -> str:
        (message,) = [m async for m in commands.check(config, mock_transport(ollama))]
        assert message["connectionStatus"]["status"] == "SUCCEEDED", message
        return str(message["connectionStatus"]["message"])

    return asyncio.run(status())


def test_the_ollama_presets_check_says_the_context_length() -> None:
    loaded = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 3_000_000_000,
                          "expires_at": "2026-12-06T12:00:00Z", "size_vram": 0, "context_length": 4096}]}
    said = _check(httpx.Response(200, json=loaded))
    assert "Ollama runs llama3.2 with a context of 4,096 tokens (num_ctx)" in said
    older = _check(httpx.Response(404, text="404 page not found"))
    assert "Ollama did not say the context length" in older and "OLLAMA_CONTEXT_LENGTH" in older
