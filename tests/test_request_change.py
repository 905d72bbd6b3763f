"""The request is part of the STATE: a prompt or model changed between incremental syncs is seen, and
``on_request_change`` decides (warn and read on, fail, or enrich every row again)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from connector.airbyte import commands
from connector.errors import ConfigError
from tests.conftest import catalog_for, chat_reply, mock_transport


def answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json=chat_reply(f"{body['model']}: {body['messages'][-1]['content']}"))


def config(rows: int, prompt: str = "Say {{text}}", model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"url": "http://llm.internal:8000/v1", "api_key": "sk-x", "model": model, "prompt": prompt,
            "input": {"rows": [{"text": f"r{i}"} for i in range(1, rows + 1)]}, **extra}


def sync(cfg: dict[str, Any], state: Any = None) -> tuple[list[dict[str, Any]], list[str], Any]:
    """(records, WARN lines, the last STATE message) of one incremental read."""
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in commands.read(cfg, catalog_for(sync_mode="incremental"), state,
                                               mock_transport(answer))]

    messages = asyncio.run(collect())
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    warns = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]
    states = [m for m in messages if m["type"] == "STATE"]
    return records, warns, [states[-1]["state"]] if states else None


def test_the_state_carries_the_request_and_an_unchanged_request_reads_on_quietly() -> None:
    _, _, state = sync(config(2))
    assert set(state[0]["stream"]["stream_state"]["request"]["parts"]) >= {"model", "prompt", "parameters"}
    records, warns, _ = sync(config(3), state)
    assert [r["text"] for r in records] == ["r3"]
    assert not [w for w in warns if "request changed" in w]


def test_a_changed_prompt_warns_by_default_and_reads_on() -> None:
    _, _, state = sync(config(2))
    records, warns, _ = sync(config(3, prompt="Summarise {{text}}"), state)
    assert [r["answer"] for r in records] == ["m: Summarise r3"]
    assert any("the request changed since the last sync (prompt); rows 1..2 keep the answers" in w for w in warns)


def test_fail_stops_before_anything_is_sent_naming_what_changed() -> None:
    _, _, state = sync(config(2))
    with pytest.raises(ConfigError, match=r"request changed since the last sync of stream 'enriched_rows' \(model\)"):
        sync(config(3, model="other", on_request_change="fail"), state)


def test_reenrich_answers_every_row_again_with_the_new_request() -> None:
    _, _, state = sync(config(2))
    records, warns, _ = sync(config(3, model="other", on_request_change="reenrich"), state)
    assert [r["answer"] for r in records] == ["other: Say r1", "other: Say r2", "other: Say r3"]
    assert any("every row is enriched again from row 1" in w for w in warns)


def test_a_state_written_before_request_fingerprints_reads_on_without_a_warning() -> None:
    _, _, state = sync(config(2))
    del state[0]["stream"]["stream_state"]["request"]
    records, warns, _ = sync(config(3, prompt="Other {{text}}"), state)
    assert [r["text"] for r in records] == ["r3"]
    assert not [w for w in warns if "request changed" in w]
