"""Structured output from endpoints that refuse ``json_schema``: JSON mode with the schema in the
prompt, then the schema in the prompt alone; the mode that worked kept for the run; ``check`` says it.

The test servers refuse as gateways do: a 400 naming ``response_format`` (LiteLLM, vLLM and others
word it differently; each names the field), and llama-cpp-python's 500 validation error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from tests.conftest import mock_transport, read_through

pytestmark = pytest.mark.timeout(30)

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["sentiment"],
          "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}}}


def _reply(content: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}}


class Refuses:
    """Refuses the structured-output forms in ``refused`` with ``status``; answers JSON otherwise."""

    def __init__(self, refused: set[str], status: int = 400) -> None:
        self.refused, self.status = refused, status
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # check's model list
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        kind = (body.get("response_format") or {}).get("type", "none")
        if kind in self.refused:
            return httpx.Response(self.status, json={"error": {
                "message": f"Invalid parameter: 'response_format' of type '{kind}' is not supported with this model.",
                "type": "invalid_request_error", "param": "response_format"}})
        return httpx.Response(200, json=_reply('{"sentiment": "positive"}'))


def _config(rows: int = 3, **extra: Any) -> dict[str, Any]:
    return {"url": "http://localhost:9/v1", "model": "m", "prompt": "Review: {{t}}",
            "system_prompt": "Classify the review.", "output_schema": SCHEMA, "max_retries": 0,
            "input": {"rows": [{"t": f"good {i}"} for i in range(rows)]}, "cache": {"enabled": False},
            "concurrency": 1, **extra}


def _read(server: Refuses, **extra: Any) -> tuple[list[dict[str, Any]], list[str]]:
    messages, error = read_through(_config(**extra), server)
    assert error is None, error
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    return records, [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def test_json_schema_refused_then_json_mode_with_the_schema_in_the_prompt() -> None:
    server = Refuses({"json_schema"})
    records, logs = _read(server)
    assert [(r["_status"], r["sentiment"]) for r in records] == [("ok", "positive")] * 3
    kinds = [b.get("response_format", {}).get("type") for b in server.bodies]
    assert kinds == ["json_schema", "json_object", "json_object", "json_object"]  # remembered for the run
    system = server.bodies[1]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Classify the review.\n\nReply with only a "
                                                                       "JSON object")
    assert json.dumps(SCHEMA, separators=(",", ":")) in system["content"]
    assert any("refused response_format json_schema (400)" in line for line in logs)


def test_json_mode_refused_too_then_the_schema_in_the_prompt_alone() -> None:
    server = Refuses({"json_schema", "json_object"})
    records, logs = _read(server)
    assert [r["_status"] for r in records] == ["ok"] * 3
    kinds = [b.get("response_format", {}).get("type") for b in server.bodies]
    assert kinds == ["json_schema", "json_object", None, None, None]
    assert sum("output_schema is asked for with" in line for line in logs) == 2


def test_llama_cpp_pythons_500_about_response_format_is_not_retried_as_a_server_error() -> None:
    server = Refuses({"json_schema"}, status=500)
    records, _logs = _read(server, max_retries=3)
    assert [r["_status"] for r in records] == ["ok"] * 3 and len(server.bodies) == 4


def test_an_endpoint_that_takes_json_schema_keeps_it() -> None:
    server = Refuses(set())
    _read(server)
    assert all(b["response_format"]["type"] == "json_schema" for b in server.bodies)


def test_check_reports_the_mode_the_endpoint_takes() -> None:
    async def status(server: Refuses) -> str:
        (message,) = [m async for m in commands.check(_config(rows=1), mock_transport(server))]
        assert message["connectionStatus"]["status"] == "SUCCEEDED", message
        return str(message["connectionStatus"]["message"])

    refused = asyncio.run(status(Refuses({"json_schema"})))
    assert "The endpoint refused response_format json_schema (400)" in refused
    assert "structured output: output_schema is asked for with JSON mode (response_format json_object) with " \
           "the schema in the prompt." in refused
    taken = asyncio.run(status(Refuses(set())))
    assert "structured output: output_schema is asked for with response_format json_schema." in taken


class IgnoresTheSchema:
    """Accepts json_schema but answers free text, as servers that ignore response_format do; answers JSON
    when the prompt itself asks for it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        asked_in_prompt = "JSON Schema" in json.dumps(body["messages"])
        return httpx.Response(200, json=_reply('{"sentiment": "positive"}' if asked_in_prompt
                                               else "The review sounds positive to me."))


def test_free_text_despite_json_schema_switches_to_json_mode_with_the_schema_in_the_prompt() -> None:
    server = IgnoresTheSchema()
    messages, error = read_through(_config(), server)
    assert error is None, error
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert [(r["_status"], r["sentiment"]) for r in records] == [("ok", "positive")] * 3
    kinds = [b.get("response_format", {}).get("type") for b in server.bodies]
    assert kinds == ["json_schema", "json_object", "json_object", "json_object"]  # one retry, then remembered
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert any("answered free text to response_format json_schema" in line for line in logs)
