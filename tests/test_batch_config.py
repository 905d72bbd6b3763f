"""Batch mode and the money settings beside it: where batch mode is refused and why, batch prices,
and ``service_tier`` as a first-class parameter of the shapes that have it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from connector.config.load import load_config
from connector.config.sections import Price
from connector.errors import ConfigError
from tests.conftest import dialect_of

BASE: dict[str, Any] = {"api_key": "sk-test", "model": "m", "prompt": "Say {{text}}",
                        "input": {"rows": [{"text": "a"}]}}


def error_for(**changes: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, **changes})
    assert info.value.failure_type == "config_error"
    return str(info.value)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_compatible", "openai_responses",
                                   "anthropic_messages", "gemini_generate_content"])
def test_batch_mode_is_valid_for_the_shapes_with_a_batch_api(shape: str) -> None:
    config = load_config({**BASE, "api_compatibility": shape, "batch": {"enabled": True}})
    assert config.batch.enabled and config.batch.wait and config.batch.poll_seconds == 60


def test_azure_has_batch_mode_too() -> None:
    config = load_config({**BASE, "api_compatibility": "azure_openai", "azure": {"resource": "res"},
                          "batch": {"enabled": True, "completion_window": "24h"}})
    assert config.batch.enabled


@pytest.mark.parametrize(("shape", "extra", "named"), [
    ("amazon_bedrock", {"bedrock": {"region": "us-east-1"}}, "S3 buckets"),
    ("google_vertex", {"vertex": {"project": "p", "location": "us-central1"}}, "Cloud Storage buckets"),
])
def test_bedrock_and_vertex_batch_mode_is_refused_naming_the_buckets(shape: str, extra: dict[str, Any],
                                                                     named: str) -> None:
    message = error_for(api_compatibility=shape, batch={"enabled": True}, **extra)
    assert "batch.enabled" in message and shape in message and named in message
    assert "openai_chat_completions" in message  # and where batch mode does work


def test_batch_mode_off_is_fine_on_every_shape() -> None:
    load_config({**BASE, "api_compatibility": "amazon_bedrock", "bedrock": {"region": "us-east-1"},
                 "batch": {"enabled": False}})


@pytest.mark.parametrize(("changes", "expected"), [
    ({"input": {"path": "-"}}, "standard input cannot be read twice"),
    ({"stream": True}, "set stream to false"),
    ({"api_compatibility": "anthropic_messages", "batch": {"enabled": True, "completion_window": "48h"}},
     "batch.completion_window: the anthropic_messages batch API takes no completion window"),
])
def test_batch_mode_refuses_what_cannot_work_in_it(changes: dict[str, Any], expected: str) -> None:
    raw = {"batch": {"enabled": True}, **changes}
    assert expected in error_for(**raw)


@pytest.mark.parametrize(("batch", "field"), [
    ({"enabled": True, "poll_seconds": 0}, "batch.poll_seconds"),
    ({"enabled": True, "completion_window": "one day"}, "batch.completion_window"),
    ({"enabled": True, "max_requests_per_batch": 0}, "batch.max_requests_per_batch"),
    ({"enabled": True, "wiat": False}, "wiat"),
])
def test_bad_batch_settings_name_the_field(batch: dict[str, Any], field: str) -> None:
    assert field in error_for(batch=batch)


def test_batch_price_given_outright_or_as_a_discount_or_else_the_normal_price() -> None:
    outright = Price(input_per_million=2, output_per_million=8, batch_input_per_million=1.1,
                     batch_output_per_million=4.2)
    discount = Price(input_per_million=2, output_per_million=8, batch_discount=0.5)
    unknown = Price(input_per_million=2, output_per_million=8)
    assert outright.rates() == (2, 8) and outright.rates(batch=True) == (1.1, 4.2)
    assert discount.rates(batch=True) == (1.0, 4.0) and discount.has_batch_price
    assert unknown.rates(batch=True) == (2, 8) and not unknown.has_batch_price
    assert "batch_discount" in error_for(prices={"*": {"input_per_million": 1, "output_per_million": 1,
                                                       "batch_discount": 1}})


@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_responses"])
def test_service_tier_is_sent_by_the_shapes_that_have_it(shape: str) -> None:
    config = load_config({**BASE, "api_compatibility": shape, "parameters": {"service_tier": "flex"}})
    body = dialect_of(config).build({"messages": [{"role": "user", "content": "hi"}]})
    assert body["service_tier"] == "flex"


@pytest.mark.parametrize(("shape", "extra"), [
    ("anthropic_messages", {}),
    ("gemini_generate_content", {}),
    ("amazon_bedrock", {"bedrock": {"region": "us-east-1"}}),
])
def test_service_tier_is_a_config_error_where_the_shape_has_none(shape: str, extra: dict[str, Any]) -> None:
    config = load_config({**BASE, "api_compatibility": shape, "parameters": {"service_tier": "flex"}, **extra})
    with pytest.raises(ConfigError) as info:
        dialect_of(config)  # where a run checks what its API shape can express
    assert "'service_tier'" in info.value.message and shape in info.value.message


def test_service_tier_takes_openais_values_only() -> None:
    assert "parameters.service_tier" in error_for(parameters={"service_tier": "cheap"})


def test_the_dry_run_shows_the_normal_and_the_batch_cost_side_by_side() -> None:
    from connector.pipeline.dry_run import dry_run_report
    from connector.pipeline.prepare import prepare

    async def report(config: dict[str, Any]) -> list[str]:
        async with prepare(load_config(config), purpose="dry_run") as ctx:
            return await dry_run_report(ctx)

    prices = {"m": {"input_per_million": 1_000_000, "output_per_million": 1_000_000, "batch_discount": 0.5}}
    raw = {**BASE, "parameters": {"max_tokens": 10}, "prices": prices, "cache": {"enabled": False}}
    lines = asyncio.run(report(raw))
    cost = next(line for line in lines if line.startswith("estimated cost"))
    normal, batch = (float(part.split("~")[1].split(" ")[0]) for part in cost.split(", "))
    assert batch == pytest.approx(normal / 2) and "through the provider's batch API" in cost
    assert not any(line.startswith("no batch price") for line in lines)
    flex = asyncio.run(report({**raw, "parameters": {"max_tokens": 10, "service_tier": "flex"}}))
    cost = next(line for line in flex if line.startswith("estimated cost"))
    assert len({part.split("~")[1].split(" ")[0] for part in cost.split(", ")}) == 1  # flex bills the batch price


def test_a_flex_answer_is_priced_at_the_batch_price() -> None:
    import httpx

    from connector.airbyte import commands
    from tests.conftest import catalog_for, chat_reply, mock_transport

    prices = {"*": {"input_per_million": 1_000_000, "output_per_million": 1_000_000,
                    "batch_input_per_million": 250_000, "batch_output_per_million": 500_000}}
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=chat_reply("hi"))  # usage: 5 in, 2 out

    async def records() -> list[dict[str, Any]]:
        config = {**BASE, "url": "http://fake.local/v1", "parameters": {"service_tier": "flex"}, "prices": prices,
                  "cache": {"enabled": False}}
        return [m["record"]["data"] async for m in commands.read(config, catalog_for(), None, mock_transport(handler))
                if m["type"] == "RECORD"]

    (record,) = asyncio.run(records())
    assert seen[0]["service_tier"] == "flex"
    assert record["_cost"] == pytest.approx(5 * 0.25 + 2 * 0.5)


def test_spark_and_ray_workers_refuse_batch_mode() -> None:
    import pyarrow as pa

    from connector.scaleout.worker import BatchEnricher

    with pytest.raises(ConfigError, match=r"batch\.enabled: Spark and Ray workers send normal requests"):
        BatchEnricher({**BASE, "batch": {"enabled": True}}, pa.schema([("text", pa.string())]))
