"""Helpers of the batch-mode tests: the fake batch server, configs for each API shape, and ``read``
run in-process with what a destination would keep of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connector.airbyte import commands
from connector.errors import ConnectorError
from tests.conftest import catalog_for
from tests.fake_batch import Control
from tests.fake_openai import spawn

KEY = "sk-batch-run-key-0123456789"


@contextmanager
def fake_batch_server(*options: str) -> Iterator[Control]:
    """The fake batch server as its own process; batches move only on ``/_advance`` unless an option says."""
    with spawn("--api-key", KEY, *options, module="tests.fake_batch") as (base, _pid):
        yield Control(base.removesuffix("/v1"))


def server_fixture(advance_every: int) -> Callable[[], Iterator[Control]]:
    """A module-scoped fixture: the fake batch server, its batches moving one step every ``advance_every``
    polls (0: only when the test says, ``Control.advance``)."""

    @pytest.fixture(scope="module")
    def server() -> Iterator[Control]:
        with fake_batch_server("--advance-every", str(advance_every)) as control:
            yield control

    return server


def batch_config(origin: str, rows: list[dict[str, Any]], shape: str = "openai_chat_completions",
                 cache: Path | None = None, **raw: Any) -> dict[str, Any]:
    """A batch-mode config of this shape against the fake server (poll_seconds tiny: the fake is quick)."""
    config: dict[str, Any] = {"api_key": KEY, "model": "m", "prompt": "Say {{text}}", "input": {"rows": rows},
                              "max_retries": 0, "timeout": 10,
                              "cache": {"path": str(cache)} if cache else {"enabled": False},
                              "batch": {"enabled": True, "poll_seconds": 0.02}}
    if shape == "azure_openai":
        config.update(api_compatibility=shape, azure={"endpoint": origin, "api_version": "2024-10-21"})
    else:
        suffix = "/v1beta" if shape == "gemini_generate_content" else "/v1"
        config.update(api_compatibility=shape, url=origin + suffix)
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def rows_of(n: int, tag: str = "", **special: str) -> list[dict[str, Any]]:
    """``n`` rows ``{"id", "text"}`` (``"<tag> row <n>"``: a test's own requests, which the shared server
    has not answered before); ``special`` gives some rows (``r3="..."``) their own text."""
    return [{"id": i, "text": special.get(f"r{i + 1}", f"{tag} row {i + 1}".strip())} for i in range(n)]


@dataclass
class Sync:
    """One ``read``: every message, and the error it ended with (if one)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    error: ConnectorError | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of("RECORD")]

    @property
    def logs(self) -> list[str]:
        return [m["log"]["message"] for m in self.of("LOG")]

    @property
    def state(self) -> list[dict[str, Any]] | None:
        """The last STATE, as the ``--state`` of the next sync."""
        states = self.of("STATE")
        return [states[-1]["state"]] if states else None

    @property
    def stream_state(self) -> dict[str, Any]:
        states = self.of("STATE")
        return dict(states[-1]["state"]["stream"]["stream_state"]) if states else {}

    @property
    def statuses(self) -> list[str]:
        return [m["trace"]["stream_status"]["status"] for m in self.of("TRACE")
                if m["trace"]["type"] == "STREAM_STATUS"]

    def committed(self) -> list[dict[str, Any]]:
        """The records a destination keeps: those before the last STATE."""
        last = max((i for i, m in enumerate(self.messages) if m["type"] == "STATE"), default=-1)
        return [m["record"]["data"] for m in self.messages[:last] if m["type"] == "RECORD"]


def read(config: dict[str, Any], state: Any = None, sync_mode: str = "incremental") -> Sync:
    """One ``read`` in-process; a ConnectorError is kept, not raised."""
    sync = Sync()

    async def go() -> None:
        async for message in commands.read(config, catalog_for(sync_mode=sync_mode), state):
            sync.messages.append(json.loads(json.dumps(message)))

    try:
        asyncio.run(go())
    except ConnectorError as exc:
        sync.error = exc
    return sync


def delta(after: dict[str, int], before: dict[str, int], *names: str) -> dict[str, int]:
    """How much each counter of the server moved."""
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}
