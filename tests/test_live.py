"""Against the real local server: llama.cpp's llama-server with SmolLM2-135M-Instruct.

The ``live_server`` fixture installs (first time: compiles) and starts it once per session
through scripts/local_llm.sh, and stops it by PID. Everything goes through the CLI process
with its production transport (aiohttp), exactly as a platform runs the connector. Reads
are few rows with a small ``max_tokens``: the model does 3-5 short completions per second.
Each read runs once per module (fixtures) and several tests look at its output.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, Server, run_command, sample_reviews

pytestmark = pytest.mark.live

N_ROWS = 5
WRONG_KEY = "sk-wrong-key-live-4242424242"
OUTPUT_COLUMNS = {"answer"}
META = {"_row_number", "_status", "_error", "_model", "_finish_reason", "_prompt_tokens",
        "_completion_tokens", "_latency_ms", "_ttft_ms", "_attempts"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def sample(workdir: Path) -> Path:
    """The first N_ROWS rows of sample_configs/product_reviews.csv as their own CSV file."""
    return sample_reviews(workdir / "reviews.csv", N_ROWS)


def sample_ids(sample: Path) -> list[str]:
    with sample.open(newline="", encoding="utf-8") as f:
        return [row["review_id"] for row in csv.DictReader(f)]


def make_config(server: Server, sample: Path, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.base_url,
        "api_key": server.api_key,
        "model": "smollm2-135m-instruct",
        "prompt": "In a few words, what is this {{category}} review about?\n\n{{review_text}}",
        "input": {"path": str(sample), "primary_key": "review_id"},
        # A stop at the first sentence end: the answer finishes ("stop") well within max_tokens
        # (10-16 tokens for these rows; 48 leaves room for the rare longer sentence that four
        # parallel slots give under load); an answer cut by the limit would be _status truncated.
        "parameters": {"max_tokens": 48, "temperature": 0, "stop": ["\n", "."]},
        "concurrency": 4,
        "timeout": 120,
        **extra,
    }


def status_of(result: Run) -> dict[str, Any]:
    [message] = result.of_type("CONNECTION_STATUS")
    return dict(message["connectionStatus"])


# check ------------------------------------------------------------------------------


def test_check_succeeds_with_the_right_key(live_server: Server, sample: Path, workdir: Path) -> None:
    result = run_command(workdir, "check_ok", "check", make_config(live_server, sample))
    assert result.code == 0
    status = status_of(result)
    assert status["status"] == "SUCCEEDED", status
    assert "Connected to 127.0.0.1" in status["message"]


def test_check_fails_with_a_wrong_key_and_never_shows_it(
    live_server: Server, sample: Path, workdir: Path
) -> None:
    result = run_command(workdir, "check_401", "check", make_config(live_server, sample, api_key=WRONG_KEY))
    assert result.code == 0, "check reports bad credentials as FAILED with exit code 0"
    status = status_of(result)
    assert status["status"] == "FAILED"
    assert "401" in status["message"] and "API key rejected" in status["message"]
    for secret in (WRONG_KEY, live_server.api_key):
        assert secret not in result.stdout and secret not in result.stderr


def test_check_without_v1_suggests_the_chat_completions_url(
    live_server: Server, sample: Path, workdir: Path
) -> None:
    """llama.cpp also serves POST /chat/completions (and GET /models) at the root, so the
    check passes (verified: 200 at /chat/completions, 404 "File Not Found" at /api/...);
    the message still points at the URL that works on every server, once it has answered."""
    root = live_server.base_url.removesuffix("/v1")
    result = run_command(workdir, "check_no_v1", "check", make_config(live_server, sample, url=root))
    status = status_of(result)
    assert status["status"] == "SUCCEEDED", status
    assert "url has no /v1" in status["message"]
    assert f"{root}/v1/chat/completions answers too: prefer it" in status["message"]


def test_check_with_a_wrong_path_prefix_fails_with_404(
    live_server: Server, sample: Path, workdir: Path
) -> None:
    root = live_server.base_url.removesuffix("/v1")
    result = run_command(workdir, "check_404", "check", make_config(live_server, sample, url=f"{root}/api"))
    status = status_of(result)
    assert status["status"] == "FAILED", status
    assert "404" in status["message"]
    assert f"{root}/api/chat/completions" in status["message"]


# read -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_run(live_server: Server, sample: Path, workdir: Path) -> Run:
    return run_command(workdir, "plain", "read", make_config(live_server, sample))


@pytest.fixture(scope="module")
def stream_run(live_server: Server, sample: Path, workdir: Path) -> Run:
    return run_command(workdir, "stream", "read", make_config(live_server, sample, stream=True))


@pytest.fixture(scope="module")
def json_run(live_server: Server, sample: Path, workdir: Path) -> Run:
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
        "required": ["sentiment"],
        "additionalProperties": False,
    }
    config = make_config(
        live_server, sample,
        prompt="Is this review positive, negative or neutral? Answer in JSON.\n\n{{review_text}}",
        parameters={"max_tokens": 48, "temperature": 0,  # grammar ends it; 8-30 tokens seen
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "sentiment", "strict": True,
                                                        "schema": schema}}},
        response_template={"json_columns": {"sentiment": "string"}},
    )
    return run_command(workdir, "json", "read", config)


def assert_good_read(result: Run, sample: Path) -> list[dict[str, Any]]:
    assert result.code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not result.trace_errors
    records = result.records
    assert [r["review_id"] for r in records] == sample_ids(sample), "one record per row, input order"
    assert [r["_row_number"] for r in records] == list(range(1, N_ROWS + 1))
    for r in records:
        assert r["_status"] == "ok", r
        assert r["_error"] is None
        assert isinstance(r["_prompt_tokens"], int) and r["_prompt_tokens"] > 0
        assert isinstance(r["_completion_tokens"], int) and r["_completion_tokens"] > 0
        assert r["_finish_reason"] == "stop"
        assert r["_attempts"] == 1
    return records


def test_read_plain(plain_run: Run, sample: Path) -> None:
    records = assert_good_read(plain_run, sample)
    for r in records:
        assert isinstance(r["answer"], str) and r["answer"].strip()
        assert r["_ttft_ms"] is None
        assert r["_latency_ms"] > 0
    [summary] = [m["log"]["message"] for m in plain_run.of_type("LOG") if " rows in " in m["log"]["message"]]
    assert re.search(rf"rows by status: {N_ROWS} ok;", summary), summary


def test_read_streaming(stream_run: Run, sample: Path) -> None:
    records = assert_good_read(stream_run, sample)
    for r in records:
        assert isinstance(r["answer"], str) and r["answer"].strip()
        assert isinstance(r["_ttft_ms"], float) and 0 < r["_ttft_ms"] <= r["_latency_ms"]


def test_streaming_survives_the_server_closing_kept_alive_connections(
    live_server: Server, workdir: Path
) -> None:
    """llama.cpp closes the connection after each streamed reply yet announces Keep-Alive;
    without the transport's resend on a dead reused connection ~20% of these requests failed
    (ServerDisconnectedError). No retries allowed here, so each must succeed first time."""
    rows = [{"review_id": f"S{i:02d}", "text": f"Review number {i}: it works."} for i in range(16)]
    config = {"url": live_server.base_url, "api_key": live_server.api_key, "stream": True,
              "prompt": "{{text}}", "input": {"rows": rows},
              "parameters": {"max_tokens": 4, "temperature": 0, "stop": [" ", "\n"]},
              "concurrency": 4, "max_retries": 0}
    result = run_command(workdir, "keepalive", "read", config)
    assert result.code == 0, result.stdout[-2000:]
    assert [r["review_id"] for r in result.records] == [row["review_id"] for row in rows]
    assert all(r["_status"] == "ok" and r["_attempts"] == 1 for r in result.records), [
        r["_error"] for r in result.records if r["_error"]]


def test_plain_and_streaming_give_the_same_columns(plain_run: Run, stream_run: Run) -> None:
    plain, streamed = plain_run.records, stream_run.records
    assert [set(r) for r in plain] == [set(r) for r in streamed]
    assert set(plain[0]) >= OUTPUT_COLUMNS | META
    # The input columns pass through unchanged in both modes.
    inputs = ["review_id", "product", "category", "rating", "review_text"]
    assert [[r[c] for c in inputs] for r in plain] == [[r[c] for c in inputs] for r in streamed]


def test_read_json_schema_gives_typed_columns(json_run: Run, sample: Path) -> None:
    records = assert_good_read(json_run, sample)
    for r in records:
        assert r["sentiment"] in ("positive", "negative", "neutral"), r
        assert json.loads(r["answer"]) == {"sentiment": r["sentiment"]}
