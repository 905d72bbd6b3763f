"""Every token and every cent: cache reads, cache writes and reasoning tokens from each API shape's
usage, the provider's request id, and ``_cost`` equal to each provider's own formula.

The usage blocks are the providers' published examples (each test says where from); the prices
are the providers' list prices of a model of that family, per million tokens. Each expected cost
is worked out by hand in the test, in the provider's own terms, and compared to the last decimal.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.answers.prices import PriceList, Spend, rates_of
from connector.config.sections import Price
from connector.dialects.usage import OPENAI_CACHE, TokenUsage, usage_from
from tests.conftest import catalog_for, read_through, run_cli

pytestmark = pytest.mark.timeout(30)

KEY = "sk-usage-test-key-0123"

# OpenAI's prompt-caching guide (chat completions): a 2,006-token prompt of which 1,920 were cached.
OPENAI_CACHED_USAGE = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                       "prompt_tokens_details": {"cached_tokens": 1920},
                       "completion_tokens_details": {"reasoning_tokens": 0}}
# OpenAI's reasoning guide (Responses): 1,024 of the 1,186 output tokens were reasoning.
RESPONSES_REASONING_USAGE = {"input_tokens": 75, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": 1186, "output_tokens_details": {"reasoning_tokens": 1024},
                             "total_tokens": 1261}
# Anthropic's prompt-caching guide: the first request writes the book to the cache, the next reads it.
ANTHROPIC_WRITE_USAGE = {"input_tokens": 21, "cache_creation_input_tokens": 188086,
                         "cache_read_input_tokens": 0, "output_tokens": 393}
ANTHROPIC_READ_USAGE = {"input_tokens": 21, "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 188086, "output_tokens": 393}
# Google's Firebase AI Logic docs (gemini-3-flash-preview): thoughts are apart from the candidates,
# and the total is their sum with the prompt (34 + 418 + 438 = 890).
GEMINI_THINKING_USAGE = {"promptTokenCount": 34, "candidatesTokenCount": 418, "totalTokenCount": 890,
                         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 34}],
                         "thoughtsTokenCount": 438}
# The Gemini API reference: promptTokenCount "includes the number of tokens in the cached content"
# (cachedContentTokenCount). Illustrative numbers, as no published reply with a cache hit was at hand.
GEMINI_CACHED_USAGE = {"promptTokenCount": 5000, "cachedContentTokenCount": 4200, "candidatesTokenCount": 30,
                       "totalTokenCount": 5030}


def _config(shape: str, prices: dict[str, Any] | None = None, **raw: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"api_compatibility": shape, "api_key": KEY, "model": "m", "prompt": "Review: {{t}}",
                              "input": {"rows": [{"t": "great"}]}, "max_retries": 0, "cache": {"enabled": False}}
    if prices is not None:
        config["prices"] = prices
    config.update(raw)
    return config


def _record(config: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response]) -> dict[str, Any]:
    messages, error = read_through(config, handler)
    assert error is None, error
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert len(records) == 1
    return records[0]


def _summary(config: dict[str, Any], handler: Callable[[httpx.Request], httpx.Response]) -> str:
    messages, _error = read_through(config, handler)
    return next(m["log"]["message"] for m in messages if m["type"] == "LOG" and "rows by status" in m["log"]["message"])


def _chat(usage: dict[str, Any], headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage}
    return lambda _request: httpx.Response(200, json=body, headers=headers or {})


Handler = Callable[[httpx.Request], httpx.Response]


def _anthropic(usage: dict[str, Any], headers: dict[str, str] | None = None) -> Handler:
    body = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}
    return lambda _request: httpx.Response(200, json=body, headers=headers or {})


def _gemini(usage: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    body = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
            "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    return lambda _request: httpx.Response(200, json=body)


def _responses(usage: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    body = {"id": "resp_1", "object": "response", "status": "completed", "model": "o3-2025-04-16",
            "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                       {"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "ok", "annotations": []}]}],
            "usage": usage}
    return lambda _request: httpx.Response(200, json=body, headers={"x-request-id": "req_resp_1"})


def _tokens(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["_prompt_tokens"], record["_completion_tokens"], record["_cached_tokens"],
            record["_cache_write_tokens"], record["_reasoning_tokens"])


# OpenAI ---------------------------------------------------------------------------------


def test_openai_chat_cached_tokens_priced_at_the_cached_input_rate() -> None:
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output. OpenAI's bill: uncached prompt tokens at the input
    # price, cached ones at the cached price, completion (reasoning included) at the output price.
    prices = {"m": {"input_per_million": 2.5, "cached_input_per_million": 1.25, "output_per_million": 10}}
    reply = _chat(OPENAI_CACHED_USAGE, {"x-request-id": "req_abc"})
    record = _record(_config("openai_chat_completions", prices), reply)
    assert _tokens(record) == (2006, 300, 1920, None, 0)
    assert round(record["_cost"], 12) == round(((2006 - 1920) * 2.5 + 1920 * 1.25 + 300 * 10) / 1e6, 12) == 0.005615
    assert record["_cost_source"] == "config" and record["_request_id"] == "req_abc"


def test_openai_cached_rate_defaults_to_half_the_input_price() -> None:
    prices = {"m": {"input_per_million": 2.5, "output_per_million": 10}}
    record = _record(_config("openai_chat_completions", prices), _chat(OPENAI_CACHED_USAGE))
    assert record["_cost"] == pytest.approx(0.005615, abs=1e-15)  # 0.5 x 2.50 = 1.25, gpt-4o's own cached price
    assert record["_request_id"] is None  # the server sent none


def test_responses_reasoning_tokens_are_part_of_the_output_and_priced_as_output() -> None:
    # o3: $2 input, $8 output.
    prices = {"m": {"input_per_million": 2, "output_per_million": 8}}
    record = _record(_config("openai_responses", prices), _responses(RESPONSES_REASONING_USAGE))
    assert _tokens(record) == (75, 1186, 0, None, 1024)
    assert round(record["_cost"], 12) == round((75 * 2 + 1186 * 8) / 1e6, 12) == 0.009638
    assert record["_request_id"] == "req_resp_1"


# Anthropic ------------------------------------------------------------------------------


@pytest.mark.parametrize(("usage", "expected"), [
    # Claude Sonnet 4.5: $3 input, $3.75 5-minute cache write, $0.30 cache read, $15 output.
    (ANTHROPIC_WRITE_USAGE, (21 * 3 + 188086 * 3.75 + 393 * 15) / 1e6),
    (ANTHROPIC_READ_USAGE, (21 * 3 + 188086 * 0.30 + 393 * 15) / 1e6),
])
def test_anthropic_cache_tokens_are_counted_once_and_priced_at_their_own_rates(
        usage: dict[str, Any], expected: float) -> None:
    prices = {"m": {"input_per_million": 3, "output_per_million": 15}}  # cache rates from Anthropic's ratios
    record = _record(_config("anthropic_messages", prices), _anthropic(usage, {"request-id": "req_018EeW"}))
    cache = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    assert _tokens(record) == (21 + 188086, 393, *cache, None)
    assert round(record["_cost"], 10) == round(expected, 10)
    assert record["_request_id"] == "req_018EeW"


def test_anthropic_cache_write_costs_0_7112805_and_read_0_0623838() -> None:
    """The two costs above as decimals: the same book written to the cache once, then read."""
    prices = {"m": {"input_per_million": 3, "output_per_million": 15}}
    write = _record(_config("anthropic_messages", prices), _anthropic(ANTHROPIC_WRITE_USAGE))
    read = _record(_config("anthropic_messages", prices), _anthropic(ANTHROPIC_READ_USAGE))
    assert (round(write["_cost"], 10), round(read["_cost"], 10)) == (0.7112805, 0.0623838)


def test_anthropic_one_hour_cache_writes_cost_twice_the_input_price() -> None:
    usage = {**ANTHROPIC_WRITE_USAGE, "cache_creation": {"ephemeral_5m_input_tokens": 88086,
                                                         "ephemeral_1h_input_tokens": 100000}}
    rates = rates_of(Price(input_per_million=3, output_per_million=15), _anthropic_cache())
    cost = rates.cost(TokenUsage(prompt=188107, completion=393, cached=0, cache_write=188086, cache_write_1h=100000))
    assert round(cost, 10) == round((21 * 3 + 88086 * 3.75 + 100000 * 6 + 393 * 15) / 1e6, 10)
    record = _record(_config("anthropic_messages", {"m": {"input_per_million": 3, "output_per_million": 15}}),
                     _anthropic(usage))
    assert round(record["_cost"], 10) == round(cost, 10)


def test_anthropic_thinking_tokens_are_the_reasoning_part_of_the_output() -> None:
    usage = {"input_tokens": 50, "output_tokens": 900, "output_tokens_details": {"thinking_tokens": 700}}
    record = _record(_config("anthropic_messages"), _anthropic(usage))
    assert _tokens(record)[::4] == (50, 700) and record["_completion_tokens"] == 900


def _anthropic_cache() -> Any:
    from connector.dialects.anthropic import AnthropicDialect

    return AnthropicDialect.CACHE_PRICING


# Gemini and Vertex ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["gemini_generate_content", "google_vertex"])
def test_gemini_thoughts_are_added_to_the_output_and_priced_as_output(shape: str) -> None:
    # gemini-2.5-flash: $0.30 input, $2.50 output (thinking included).
    prices = {"m": {"input_per_million": 0.3, "output_per_million": 2.5}}
    extra = {"url": "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/"
                    "google"} if shape == "google_vertex" else {}
    record = _record(_config(shape, prices, **extra), _gemini(GEMINI_THINKING_USAGE))
    assert _tokens(record) == (34, 418 + 438, None, None, 438)
    assert round(record["_cost"], 12) == round((34 * 0.3 + 856 * 2.5) / 1e6, 12) == 0.0021502


def test_gemini_cached_content_is_part_of_the_prompt_and_priced_at_a_tenth() -> None:
    prices = {"m": {"input_per_million": 0.3, "output_per_million": 2.5}}
    record = _record(_config("gemini_generate_content", prices), _gemini(GEMINI_CACHED_USAGE))
    assert _tokens(record) == (5000, 30, 4200, None, None)
    assert round(record["_cost"], 12) == round((800 * 0.3 + 4200 * 0.03 + 30 * 2.5) / 1e6, 12) == 0.000441


# Bedrock and Azure speak chat completions: the same usage, their own request-id headers -----------


def test_bedrock_and_azure_read_their_request_id_headers() -> None:
    bedrock = _record(_config("amazon_bedrock", bedrock={"region": "us-east-1"}),
                      _chat(OPENAI_CACHED_USAGE, {"x-amzn-RequestId": "b-123"}))
    azure = _record(_config("azure_openai", url="https://res.openai.azure.com"),
                    _chat(OPENAI_CACHED_USAGE, {"apim-request-id": "a-456", "x-request-id": "x-789"}))
    assert (bedrock["_request_id"], azure["_request_id"]) == ("b-123", "a-456")
    assert _tokens(bedrock) == _tokens(azure) == (2006, 300, 1920, None, 0)


# Costs the endpoint reports ---------------------------------------------------------------


def test_a_cost_openrouter_reports_in_usage_is_taken_as_it_is() -> None:
    usage = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.00014,
             "prompt_tokens_details": {"cached_tokens": 0}}
    record = _record(_config("openai_chat_completions", {"*": {"input_per_million": 100, "output_per_million": 100}}),
                     _chat(usage))
    assert (record["_cost"], record["_cost_source"]) == (0.00014, "endpoint")


def test_a_cost_litellm_reports_in_its_header_is_taken_without_any_prices() -> None:
    record = _record(_config("openai_chat_completions"),
                     _chat({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                           {"x-litellm-response-cost": "0.000123"}))
    assert (record["_cost"], record["_cost_source"]) == (0.000123, "endpoint")


def test_a_model_without_a_price_has_an_unknown_cost_and_the_summary_says_so() -> None:
    config = _config("openai_chat_completions", {"other": {"input_per_million": 1, "output_per_million": 1}})
    record = _record(config, _chat(OPENAI_CACHED_USAGE))
    assert record["_cost"] is None and record["_cost_source"] is None
    assert "no price for: gpt-4o-2024-08-06 (1 rows)" in _summary(config, _chat(OPENAI_CACHED_USAGE))


def test_summary_reports_the_cache_hit_ratio_reasoning_and_where_prices_came_from() -> None:
    prices = {"m": {"input_per_million": 2.5, "output_per_million": 10}}
    text = _summary(_config("openai_chat_completions", prices), _chat(OPENAI_CACHED_USAGE))
    assert "tokens in 2006 (read from the prompt cache 1920, cache hit ratio 95.7%; written to it 0), out 300" in text
    assert "cost 0.0056 (rows priced from: config 1)" in text


# The formula, per shape -------------------------------------------------------------------


def test_batch_discount_applies_to_cache_rates_too() -> None:
    price = Price(input_per_million=3, output_per_million=15, batch_discount=0.5)
    spend = Spend()
    usage = TokenUsage(prompt=188107, completion=393, cached=188086, cache_write=0)
    spend.add(PriceList({"m": price}), _anthropic_cache(), "m", None, usage, batch=True)
    cost, source = spend.row_cost(PriceList({"m": price}), "m")
    assert round(cost or 0, 10) == round((21 * 1.5 + 188086 * 0.15 + 393 * 7.5) / 1e6, 10) and source == "config"


def test_usage_from_reads_gateways_and_servers_that_name_cache_tokens_otherwise() -> None:
    # LiteLLM passes Anthropic's names through; DeepSeek names cache hits its own way; llama.cpp's timings.
    litellm = usage_from({"usage": {"prompt_tokens": 30, "completion_tokens": 1, "cache_read_input_tokens": 20,
                                    "cache_creation_input_tokens": 5}})
    deepseek = usage_from({"usage": {"prompt_tokens": 30, "completion_tokens": 1, "prompt_cache_hit_tokens": 24}})
    llama = usage_from({"usage": {"prompt_tokens": 30, "completion_tokens": 1}, "timings": {"cache_n": 28}})
    assert (litellm.cached, litellm.cache_write, deepseek.cached, llama.cached) == (20, 5, 24, 28)
    assert usage_from({"usage": {"prompt_tokens": 3, "cost": "n/a"}}).reported_cost is None


def test_openai_default_cache_ratio_is_the_highest_openai_publishes() -> None:
    assert (OPENAI_CACHE.read, OPENAI_CACHE.write) == (0.5, 1.0)


# prompt_cache: the shared prefix marked cacheable where the API needs it -------------------------


def _anthropic_body(**raw: Any) -> dict[str, Any]:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _anthropic(ANTHROPIC_READ_USAGE)(request)

    read_through(_config("anthropic_messages", **raw), answer)  # the body sent is what is checked
    return bodies[0]


def test_prompt_cache_marks_anthropic_system_prompt_as_a_cache_breakpoint() -> None:
    body = _anthropic_body(prompt_cache=True, system_prompt="You classify reviews. " * 200)
    assert body["system"] == [{"type": "text", "text": "You classify reviews. " * 200,
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": "Review: great"}]  # the row's part is not marked


def test_prompt_cache_without_a_system_prompt_marks_the_output_schema_tool() -> None:
    schema = {"type": "object", "properties": {"stars": {"type": "integer"}}, "required": ["stars"]}
    body = _anthropic_body(prompt_cache=True, output_schema=schema)
    assert "system" not in body and body["tools"][-1]["cache_control"] == {"type": "ephemeral"}


def test_without_prompt_cache_nothing_is_marked() -> None:
    body = _anthropic_body(system_prompt="You classify reviews.")
    assert body["system"] == "You classify reviews." and "cache_control" not in json_text(body)


def json_text(body: dict[str, Any]) -> str:
    return json.dumps(body)


# The dry run of a cached workload ------------------------------------------------------------------


def _dry_run(shape: str, **raw: Any) -> str:
    config = {**_config(shape, {"m": {"input_per_million": 3, "output_per_million": 15}}),
              "system_prompt": "Label the review. " * 200, "parameters": {"max_tokens": 5},
              "input": {"rows": [{"t": t} for t in ("good", "bad", "fine", "awful")]}, **raw}
    work = Path(tempfile.mkdtemp())
    (work / "c.json").write_text(json.dumps(config))
    (work / "k.json").write_text(json.dumps(catalog_for()))
    run = run_cli(["read", "--config", str(work / "c.json"), "--catalog", str(work / "k.json"), "--dry-run"])
    assert run.code == 0, run.stderr
    return " ".join(m["log"]["message"] for m in run.of_type("LOG"))


def test_the_dry_run_prices_the_shared_prefix_read_from_the_prompt_cache() -> None:
    text = _dry_run("openai_chat_completions")
    # 200 x "Label the review. " = 3,600 characters shared by every prompt: ~900 tokens and a few of JSON.
    shared = int(re.search(r"every prompt starts with the same ~([\d,]+) tokens", text).group(1).replace(",", ""))
    assert 900 <= shared <= 920
    high = float(re.search(r"estimated cost: ~([\d.]+) as normal requests", text).group(1))
    low = float(re.search(r"the cost lies between ~([\d.]+) and", text).group(1))
    # Three of four requests read the prefix at half the input price (OpenAI's ratio): 3 x shared x 1.5 / 1e6.
    assert round(high - low, 4) == round(3 * shared * 1.5 / 1e6, 4)


def test_the_dry_run_tells_anthropic_users_to_set_prompt_cache() -> None:
    assert "set prompt_cache so that Anthropic caches them" in _dry_run("anthropic_messages")
    cached = _dry_run("anthropic_messages", prompt_cache=True)
    assert "with prompt caching: every prompt starts with the same" in cached
