"""Through LiteLLM's proxy (litellm[proxy] 1.108.7, ``make litellm``) in front of the real
llama.cpp server: the gateway people put in front of models.

The proxy runs as its own process on a free port with the config of
:func:`tests.servers.litellm_config` (a master key and no database; the llama.cpp server as
an ``openai/`` deployment, plus a 1-request-per-minute group), and is stopped by its PID.
It serves the three shapes the connector speaks to it: chat completions (passed on as they
are), Responses and Anthropic Messages (both turned into llama.cpp ``/v1/responses``
calls by LiteLLM).

Its deviations, and what the connector makes of them (docs/COMPATIBILITY.md):

- a key that is not the master key: 400 "No connected db." (not 401), read as a rejected
  key: ``check`` FAILED "API key rejected (400)", ``read`` stops at the first row;
- an unknown model: 400 "Invalid model name" (not 404), read as model not found, with
  the models the proxy lists;
- its own 429 (a group over its ``rpm``) has no ``Retry-After``: rows fail as
  ``rate_limit`` (with retries, the client waits ``llm_provider-retry-after``: 60 s, so
  the unit test in tests/test_gateway_errors.py covers that wait);
- Responses and Messages ``max_tokens`` below 16 become 16 on the way to the server.

Reads are 3 rows with ``max_tokens`` 16: the model does 3-5 short completions per second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, Server, run_command, sample_reviews
from tests.servers import LITELLM_LIMITED_MODEL, MODEL, exhaust_litellm_limited_group, start_litellm, stop

pytestmark = pytest.mark.live

N_ROWS = 3
WRONG_KEY = "sk-wrong-key-litellm-4242424242"
SHAPES = ["openai_chat_completions", "openai_responses", "anthropic_messages"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live_litellm")


@pytest.fixture(scope="module")
def proxy(live_server: Server, workdir: Path) -> Iterator[Server]:
    started = start_litellm(live_server.base_url, live_server.api_key, workdir)
    try:
        yield Server(started.base_url, started.api_key, started.pid)
    finally:
        stop(started.pid)


@pytest.fixture(scope="module")
def sample(workdir: Path) -> Path:
    return sample_reviews(workdir / "reviews.csv", N_ROWS)


def make_config(proxy: Server, sample: Path, shape: str = "openai_chat_completions", **extra: Any) -> dict[str, Any]:
    return {
        "api_compatibility": shape,
        "url": proxy.base_url,
        "api_key": proxy.api_key,
        "model": MODEL,
        "prompt": "In a few words, what is this {{category}} review about?\n\n{{review_text}}",
        "input": {"path": str(sample), "primary_key": "review_id"},
        # 16: LiteLLM raises a smaller Responses/Messages limit to 16 anyway (see the test below).
        "parameters": {"max_tokens": 16, "temperature": 0},
        "concurrency": N_ROWS,
        "timeout": 120,
        "cache": {"enabled": False},
        **extra,
    }


def status_of(result: Run) -> dict[str, Any]:
    assert result.code == 0, "check always exits 0"
    [message] = result.of_type("CONNECTION_STATUS")
    return dict(message["connectionStatus"])


# The three shapes, plain and streamed -------------------------------------------------------


@pytest.fixture(scope="module")
def reads(proxy: Server, sample: Path, workdir: Path) -> dict[tuple[str, bool], Run]:
    return {(shape, stream): run_command(workdir, f"read-{shape}-{stream}", "read",
                                         make_config(proxy, sample, shape, stream=stream))
            for shape in SHAPES for stream in (False, True)}


@pytest.mark.parametrize("shape", SHAPES)
def test_check_succeeds_for_each_shape(proxy: Server, sample: Path, workdir: Path, shape: str) -> None:
    status = status_of(run_command(workdir, f"check-{shape}", "check", make_config(proxy, sample, shape)))
    assert status["status"] == "SUCCEEDED", status
    assert status["message"].startswith(f"Connected to {proxy.base_url.split('/')[2]}: ")
    assert "2 model(s) listed" in status["message"], "both model groups of the proxy config"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_read_answers_every_row(reads: dict[tuple[str, bool], Run], shape: str, stream: bool) -> None:
    result = reads[shape, stream]
    assert result.code == 0, result.stderr[-2000:] + result.stdout[-2000:]
    assert not result.trace_errors
    assert [r["_row_number"] for r in result.records] == list(range(1, N_ROWS + 1))
    for record in result.records:
        assert record["_status"] in ("ok", "truncated"), record
        assert record["_error_class"] is None
        assert record["_finish_reason"] == ("length" if record["_status"] == "truncated" else "stop")
        assert isinstance(record["answer"], str) and record["answer"].strip()
        # Usage arrives in every shape, streamed too.
        assert record["_prompt_tokens"] > 0 and 0 < record["_completion_tokens"] <= 16
        assert record["_attempts"] == 1
        assert (record["_ttft_ms"] is not None) == stream


def test_every_shape_gives_the_same_columns(reads: dict[tuple[str, bool], Run]) -> None:
    columns = {key: frozenset(result.records[0]) for key, result in reads.items()}
    assert len(set(columns.values())) == 1, columns


def test_responses_max_tokens_below_16_is_raised_to_16(proxy: Server, sample: Path, workdir: Path) -> None:
    """The connector sends max_output_tokens 4; LiteLLM sends 16 on (OpenAI's minimum for
    Responses). The record says what was generated, and paid for: 16 tokens. The answer was
    cut, yet the row reads ``ok``: llama.cpp's /v1/responses reports such an answer as
    ``completed`` (its /v1/chat/completions and /v1/messages say ``length`` / ``max_tokens``)."""
    config = make_config(proxy, sample, "openai_responses", parameters={"max_tokens": 4, "temperature": 0},
                         prompt="Count from 1 to 100, separated by commas. {{review_id}}")
    result = run_command(workdir, "responses-max-4", "read", config)
    assert result.code == 0, result.stdout[-2000:]
    for record in result.records:
        assert record["_completion_tokens"] == 16, record
        assert (record["_status"], record["_finish_reason"]) == ("ok", "stop"), record


# Wrong key, wrong model ------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_check_with_a_wrong_key_says_the_key_was_rejected(
    proxy: Server, sample: Path, workdir: Path, shape: str
) -> None:
    result = run_command(workdir, f"check-key-{shape}", "check", make_config(proxy, sample, shape, api_key=WRONG_KEY))
    status = status_of(result)
    assert status["status"] == "FAILED"
    assert status["message"].startswith("API key rejected (400) by "), status
    assert "No connected db." in status["message"]
    for secret in (WRONG_KEY, proxy.api_key):
        assert secret not in result.stdout + result.stderr


def test_read_with_a_wrong_key_stops_at_once(proxy: Server, sample: Path, workdir: Path) -> None:
    result = run_command(workdir, "read-key", "read", make_config(proxy, sample, api_key=WRONG_KEY))
    assert result.code == 1
    [error] = result.trace_errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("API key rejected (400) at "), error
    assert result.records == []
    assert WRONG_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("shape", SHAPES)
def test_check_with_a_wrong_model_lists_the_proxys_models(
    proxy: Server, sample: Path, workdir: Path, shape: str
) -> None:
    status = status_of(run_command(workdir, f"check-model-{shape}", "check",
                                   make_config(proxy, sample, shape, model="gpt-nope")))
    assert status["status"] == "FAILED"
    assert status["message"].startswith(f"Model 'gpt-nope' not found at {proxy.base_url.split('/')[2]} (400)."), status
    assert f"The server offers: {MODEL}, {LITELLM_LIMITED_MODEL}." in status["message"]
    assert "Invalid model name passed in model=gpt-nope" in status["message"]


def test_read_with_a_wrong_model_stops_at_once(proxy: Server, sample: Path, workdir: Path) -> None:
    result = run_command(workdir, "read-model", "read", make_config(proxy, sample, model="gpt-nope"))
    assert result.code == 1
    [error] = result.trace_errors
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("model not found: request rejected (400) at "), error
    assert "Invalid model name passed in model=gpt-nope" in error["message"]
    assert result.records == []


# Rate limit ------------------------------------------------------------------------------


def test_rate_limited_rows_fail_as_rate_limit_and_check_says_throttled(
    proxy: Server, sample: Path, workdir: Path
) -> None:
    """LiteLLM's own 429 (the group is over its rpm) carries no Retry-After. With no retries,
    each row is a ``rate_limit`` error (a retry would wait the 60 s of ``llm_provider-retry-after``:
    tests/test_gateway_errors.py), every row is emitted, and since every row failed the read
    ends with a transient TRACE ERROR and exit 1."""
    exhaust_litellm_limited_group(proxy.base_url, proxy.api_key)
    config = make_config(proxy, sample, model=LITELLM_LIMITED_MODEL, max_retries=0)
    result = run_command(workdir, "read-rpm", "read", config)
    check = status_of(run_command(workdir, "check-rpm", "check", config))

    assert [r["_status"] for r in result.records] == ["error"] * N_ROWS, result.records
    for record in result.records:
        assert record["_error_class"] == "rate_limit"
        assert record["_error"].startswith("rate limited (429) at "), record
        assert "No deployments available for selected model" in record["_error"]
        assert record["_attempts"] == 1
    assert result.code == 1
    [error] = result.trace_errors
    assert error["failure_type"] == "transient_error" and "every row failed" in error["message"], error
    assert check["status"] == "FAILED"
    assert check["message"].startswith("Rate limited (429) by "), check
