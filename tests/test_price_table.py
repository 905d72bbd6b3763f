"""Public list prices from genai-prices' bundled table: used for a model ``prices`` does not cover,
at a provider's own address only, offline, and overridden by the config."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from connector.answers.price_table import PriceTable, source
from connector.answers.prices import PriceList
from connector.config.sections import Price
from tests.conftest import catalog_for, read_through, run_cli

pytestmark = pytest.mark.timeout(60)

OPENAI = "https://api.openai.com/v1/chat/completions"
# OpenAI's prompt-caching guide (chat completions): 1,920 of 2,006 prompt tokens cached.
CACHED_REPLY = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                          "prompt_tokens_details": {"cached_tokens": 1920}}}


def _config(url: str, prices: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"url": url, "api_key": "sk-table-test-0123", "model": "gpt-4o", "prompt": "Say {{t}}",
            "input": {"rows": [{"t": "a"}]}, "max_retries": 0, "cache": {"enabled": False}, "prices": prices or {}}


def _record(url: str, prices: dict[str, Any] | None = None) -> dict[str, Any]:
    messages, error = read_through(_config(url, prices), lambda _r: httpx.Response(200, json=CACHED_REPLY))
    assert error is None, error
    return next(m["record"]["data"] for m in messages if m["type"] == "RECORD")


def test_a_well_known_model_at_its_provider_is_priced_from_the_table() -> None:
    # gpt-4o's list price: $2.50 input, $1.25 cached input, $10 output.
    record = _record("https://api.openai.com/v1")
    assert round(record["_cost"], 12) == round((86 * 2.5 + 1920 * 1.25 + 300 * 10) / 1e6, 12) == 0.005615
    assert record["_cost_source"] == source() == "genai-prices 0.2.3"


def test_the_config_overrides_the_table() -> None:
    record = _record("https://api.openai.com/v1", {"gpt-4o": {"input_per_million": 5, "output_per_million": 20}})
    assert record["_cost_source"] == "config"
    assert round(record["_cost"], 12) == round((86 * 5 + 1920 * 2.5 + 300 * 20) / 1e6, 12)


def test_a_self_hosted_server_is_never_priced_at_a_hosted_providers_rate() -> None:
    record = _record("http://localhost:8000/v1")
    assert record["_cost"] is None and record["_cost_source"] is None


def test_table_prices_carry_cache_and_batch_rates() -> None:
    sonnet = PriceTable("https://api.anthropic.com/v1/messages").price("claude-sonnet-4-5")
    assert sonnet == Price(input_per_million=3, output_per_million=15, cached_input_per_million=0.3,
                           cache_write_per_million=3.75, batch_input_per_million=1.5, batch_output_per_million=7.5)
    assert PriceTable(OPENAI).price("no-such-model-xyz") is None
    assert PriceList({}, PriceTable(OPENAI)).lookup("gpt-4o-mini") is not None


def test_the_dry_run_names_the_table_as_the_source(write_json: Any) -> None:
    config = {**_config("https://api.openai.com/v1"), "parameters": {"max_tokens": 10}}
    run = run_cli(["read", "--config", write_json("c.json", config), "--catalog", write_json("k.json", catalog_for()),
                   "--dry-run"])  # sends nothing: no network
    assert run.code == 0, run.stderr
    text = [m["log"]["message"] for m in run.messages if m["type"] == "LOG"]
    assert any("prices of gpt-4o from genai-prices 0.2.3's price table" in line for line in text)


def test_the_table_is_read_with_no_network() -> None:
    code = ("import socket\n"
            "def refuse(*a, **k): raise OSError('network used')\n"
            "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
            "from connector.answers.price_table import PriceTable\n"
            "print(PriceTable('https://api.openai.com/v1').price('gpt-4o-mini'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "input_per_million=0.15" in done.stdout


def test_a_config_price_without_cache_rates_takes_the_listed_models_own_ratio() -> None:
    # gpt-4.1's cached input is a quarter of its input price (not the 0.5 default): a config price of
    # $4 input gets $1 cached input. Claude Sonnet 4.5: cache reads 0.1x, writes 1.25x.
    listed = PriceList({"*": Price(input_per_million=4, output_per_million=8)}, PriceTable(OPENAI)).lookup("gpt-4.1")
    assert listed is not None and listed[0].cached_input_per_million == pytest.approx(1.0) and listed[1] == "config"
    anthropic = PriceTable("https://api.anthropic.com/v1/messages")
    found = PriceList({"*": Price(input_per_million=10, output_per_million=50)}, anthropic).lookup("claude-sonnet-4-5")
    assert found is not None
    assert (found[0].cached_input_per_million, found[0].cache_write_per_million) == pytest.approx((1.0, 12.5))


def test_only_addresses_the_table_could_know_load_it() -> None:
    """The table costs ~0.2-0.3 s of CPU to load, on a run's first answer: a local http:// server never
    loads it. Before, every run paid it (the matrix's per-row CPU after start-up counted it)."""
    from genai_prices import data_snapshot

    from connector.answers.price_table import may_be_listed

    for provider in data_snapshot.get_snapshot().providers:  # the rule holds for every provider listed
        pattern = provider.api_pattern
        assert pattern.startswith("https://") or "azure" in pattern, (provider.id, pattern)
    assert may_be_listed("https://api.openai.com/v1") and may_be_listed("http://x.openai.azure.com/openai")
    code = ("import sys\n"
            "from connector.answers.price_table import PriceTable\n"
            "assert PriceTable('http://127.0.0.1:8000/v1').price('gpt-4o') is None\n"
            "print('genai_prices' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
