"""An in-process endpoint for the input-fidelity tests: records every request body, answers with its prompt.

The tests assert both sides of a row: what the server received (the prompt text
and the JSON body) and what the record holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from connector.airbyte import commands
from connector.endpoint.transport import HttpxTransport
from tests.conftest import catalog_for, chat_reply


class Echo:
    """Answers each chat completion with ``echo: <last user message>``; keeps the bodies it got."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(404, json={"error": {"message": "no models here"}})
        body = json.loads(request.content)
        self.bodies.append(body)
        return httpx.Response(200, json=chat_reply("echo: " + body["messages"][-1]["content"]))

    @property
    def prompts(self) -> list[str]:
        return [body["messages"][-1]["content"] for body in self.bodies]

    def factory(self) -> Callable[[Any], HttpxTransport]:
        return lambda _config: HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(self)))


def config(input_: dict[str, Any], prompt: str, **extra: Any) -> dict[str, Any]:
    return {"url": "http://endpoint.test/v1", "api_key": "sk-test-0123456789", "model": "m", "prompt": prompt,
            "input": input_, "cache": {"enabled": False}, **extra}


async def read(raw: dict[str, Any], echo: Echo, state: Any = None, sync_mode: str = "full_refresh",
               stdin: Any = None) -> list[dict[str, Any]]:
    """Every message of a read."""
    return [m async for m in commands.read(raw, catalog_for(sync_mode=sync_mode), state, echo.factory(),
                                           stdin=stdin)]


async def discover(raw: dict[str, Any], echo: Echo) -> dict[str, Any]:
    """The enriched stream's JSON schema properties."""
    messages = [m async for m in commands.discover(raw, echo.factory())]
    props: dict[str, Any] = messages[-1]["catalog"]["streams"][0]["json_schema"]["properties"]
    return props


async def check(raw: dict[str, Any], echo: Echo) -> dict[str, Any]:
    (status,) = [m async for m in commands.check(raw, echo.factory())]
    result: dict[str, Any] = status["connectionStatus"]
    return result


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def logs(messages: list[dict[str, Any]]) -> list[str]:
    return [m["log"]["message"] for m in messages if m["type"] == "LOG"]


def state_at(position: int, stream: str = "enriched_rows") -> list[dict[str, Any]]:
    return [{"type": "STREAM", "stream": {"stream_descriptor": {"name": stream},
                                          "stream_state": {"position": position}}}]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
