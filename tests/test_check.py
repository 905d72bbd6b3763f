"""``check``: every failure is CONNECTION_STATUS FAILED with a precise, safe message (exit 0)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from tests.conftest import Server, chat_reply, mock_transport, run_cli

KEY = "sk-check-secret-key-42"


def base_config(**extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": KEY, "model": "m",
            "prompt": "Classify: {{text}}", "input": {"rows": [{"text": "great"}]}, **extra}


def check(config: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response]) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.check(config, mock_transport(handler))]

    (message,) = asyncio.run(collect())
    assert message["type"] == "CONNECTION_STATUS"
    status = message["connectionStatus"]
    assert KEY not in status["message"]
    return dict(status)


def models_then(chat: Callable[[httpx.Request], httpx.Response],
                models: list[str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            if models is None:
                return httpx.Response(404, text="Not Found")
            return httpx.Response(200, json={"data": [{"id": m} for m in models]})
        return chat(request)
    return handler


def test_success_names_the_model_and_proves_the_completion() -> None:
    seen: list[dict[str, Any]] = []

    def chat(request: httpx.Request) -> httpx.Response:
        seen.append(__import__("json").loads(request.content))
        return httpx.Response(200, json=chat_reply("x", "length", model="m-2024"))

    status = check(base_config(stream=True), models_then(chat, ["m"]))
    assert status["status"] == "SUCCEEDED", status
    assert "m-2024" in status["message"]
    # the probe is minimal and plain, whatever the streaming setting
    assert seen[0]["max_tokens"] == 1 and "stream" not in seen[0]
    assert seen[0]["messages"][-1]["content"] == "Classify: great"


def test_rejected_key_is_named_without_echoing_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}",
                                                   "code": "invalid_api_key"}})

    status = check(base_config(), handler)
    assert status["status"] == "FAILED"
    assert "API key rejected (401)" in status["message"]
    assert "****" in status["message"]


def test_wrong_path_suggests_the_v1_url() -> None:
    config = base_config(url="http://llm.internal:8000")
    status = check(config, models_then(lambda r: httpx.Response(404, text="Not Found")))
    assert status["status"] == "FAILED"
    assert "404" in status["message"]
    assert "did you mean http://llm.internal:8000/v1/chat/completions?" in status["message"].lower()


def test_unknown_model_lists_what_the_server_offers() -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"message": "The model `m` does not exist",
                                                   "code": "model_not_found"}})

    status = check(base_config(), models_then(chat, ["llama-3-8b", "qwen-7b"]))
    assert status["status"] == "FAILED"
    assert "Model 'm' not found" in status["message"]
    assert "llama-3-8b, qwen-7b" in status["message"]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("read timed out"), "Timeout"),
        (httpx.ConnectTimeout("connect timed out"), "Timeout"),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "TLS failure"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "Host unreachable"),
    ],
)
def test_transport_failures_are_named(exc: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    status = check(base_config(), handler)
    assert status["status"] == "FAILED"
    assert status["message"].startswith(expected), status["message"]


def test_template_naming_a_missing_column_fails_at_check() -> None:
    config = base_config(prompt="Summarise {{body}} for {{audience}}")
    status = check(config, lambda r: httpx.Response(200, json=chat_reply("x")))
    assert status["status"] == "FAILED"
    assert "audience, body" in status["message"] and "input columns are: text" in status["message"]


def test_invalid_config_fails_with_the_field_path() -> None:
    status = check(base_config(timeout=0), lambda r: httpx.Response(200, json=chat_reply("x")))
    assert status["status"] == "FAILED"
    assert "timeout: must be > 0" in status["message"]


def test_cli_check_exits_0_on_failure_and_prints_no_traceback(fake_server: Server, write_json) -> None:
    config = {**base_config(), "url": fake_server.base_url, "api_key": "sk-wrong-key-000000"}
    run = run_cli(["check", "--config", write_json("c.json", config)], process=True)
    assert run.code == 0
    (status,) = run.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "API key rejected (401)" in status["connectionStatus"]["message"]
    assert "sk-wrong-key-000000" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_cli_check_unreachable_host(write_json) -> None:
    config = {**base_config(), "url": "http://127.0.0.1:9/v1", "timeout": 5}
    run = run_cli(["check", "--config", write_json("c.json", config)])
    assert run.code == 0
    message = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    assert message.startswith("Host unreachable") and "127.0.0.1:9" in message
