"""Bedrock's embedding models through InvokeModel (``api_compatibility: bedrock_embeddings``), against a fake
endpoint (httpx MockTransport) that holds each request to the shape the Bedrock user guide publishes:
``POST /model/{modelId}/invoke`` (the id percent-encoded, as AWS's SDKs send it), ``Authorization: Bearer`` with
a Bedrock API key, and the body of the model's family (Titan Text Embeddings v2 ``{"inputText", "dimensions"}``
-> ``{"embedding", "inputTextTokenCount"}``; Cohere Embed ``{"texts", "input_type"}`` -> ``{"embeddings"}``).
No Bedrock endpoint is reachable from here: the shape is verified only against the reference.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import read_through

KEY = "bedrock-api-key-ABSKQmVkcm9jayBrZXk0123"
TEXTS = ["first review", "a second, longer review", "third", "fourth one", "fifth"]


def vector(text: str, size: int = 4) -> list[float]:
    return [float(len(text)), float(size), 0.5, -1.0][:size]


class Bedrock:
    """Answers InvokeModel for a Titan or a Cohere embeddings model, refusing what the reference does not show."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-type"] == "application/json"
        path = request.url.raw_path.decode()
        body = json.loads(request.content)
        self.requests.append((path, body))
        if path == "/model/amazon.titan-embed-text-v2%3A0/invoke":
            assert set(body) <= {"inputText", "dimensions", "normalize", "embeddingTypes"}
            assert isinstance(body["inputText"], str)
            size = body.get("dimensions", 4)
            return httpx.Response(200, json={"embedding": vector(body["inputText"], size),
                                             "inputTextTokenCount": len(body["inputText"].split())})
        if path == "/model/cohere.embed-english-v3/invoke":
            assert set(body) <= {"texts", "input_type", "truncate", "embedding_types", "images"}
            assert body["input_type"] in ("search_document", "search_query", "classification", "clustering")
            assert 1 <= len(body["texts"]) <= 96
            return httpx.Response(200, json={"id": "e1", "response_type": "embeddings_floats", "texts": body["texts"],
                                             "embeddings": [vector(t) for t in body["texts"]]})
        return httpx.Response(404, json={"message": f"no such model at {path}"})


def config(model: str, **extra: Any) -> dict[str, Any]:
    return {"api_compatibility": "bedrock_embeddings", "bedrock": {"region": "us-east-1"}, "api_key": KEY,
            "model": model, "prompt": "{{text}}", "input": {"rows": [{"text": t} for t in TEXTS]},
            "cache": {"enabled": False}, "max_retries": 0,
            "prices": {"*": {"input_per_million": 1_000_000, "output_per_million": 0}}, **extra}


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"]["data"] for m in messages if m["type"] == "RECORD"]


def test_titan_gets_one_input_text_a_request_with_dimensions_and_its_token_count() -> None:
    bedrock = Bedrock()
    messages, error = read_through(config("amazon.titan-embed-text-v2:0", embeddings={"dimensions": 3,
                                                                                        "inputs_per_request": 16}),
                                   bedrock)
    assert error is None, error
    assert bedrock.requests == [("/model/amazon.titan-embed-text-v2%3A0/invoke", {"inputText": t, "dimensions": 3})
                                for t in TEXTS]
    got = records(messages)
    assert [r["embedding"] for r in got] == [vector(t, 3) for t in TEXTS]
    assert [r["_prompt_tokens"] for r in got] == [len(t.split()) for t in TEXTS]
    assert [r["_cost"] for r in got] == [float(len(t.split())) for t in TEXTS]
    assert all(r["_status"] == "ok" and r["_completion_tokens"] == 0 for r in got)
    assert KEY not in json.dumps(messages)


def test_cohere_gets_several_texts_a_request_and_its_tokens_are_unknown() -> None:
    bedrock = Bedrock()
    messages, error = read_through(config("cohere.embed-english-v3", embeddings={"inputs_per_request": 3}), bedrock)
    assert error is None, error
    assert bedrock.requests == [
        ("/model/cohere.embed-english-v3/invoke", {"texts": TEXTS[:3], "input_type": "search_document"}),
        ("/model/cohere.embed-english-v3/invoke", {"texts": TEXTS[3:], "input_type": "search_document"})]
    got = records(messages)
    assert [r["embedding"] for r in got] == [vector(t) for t in TEXTS]
    assert all(r["_status"] == "ok" and r["_prompt_tokens"] is None and r["_cost"] is None for r in got)


def test_cohere_input_type_comes_from_extra_body() -> None:
    bedrock = Bedrock()
    _, error = read_through(config("cohere.embed-english-v3", extra_body={"input_type": "clustering"}), bedrock)
    assert error is None, error
    assert {body["input_type"] for _, body in bedrock.requests} == {"clustering"}


@pytest.mark.parametrize("change, message", [
    ({"api_key": None}, "api_key: api_compatibility bedrock_embeddings authenticates with an Amazon Bedrock API key"),
    ({"bedrock": None}, "bedrock.region: api_compatibility bedrock_embeddings needs bedrock.region"),
    ({"model": "meta.llama3-8b"}, "is neither an Amazon Titan text embeddings model"),
    ({"model": "cohere.embed-english-v3", "embeddings": {"dimensions": 8}}, "Cohere Embed v3 on Bedrock has no "
                                                                            "dimensions"),
    ({"embeddings": {"encoding_format": "base64"}}, "embeddings.encoding_format: Bedrock's embedding models"),
    ({"batch": {"enabled": True}}, "batch.enabled: the bedrock_embeddings API shape has no batch mode here"),
])
def test_what_the_shape_cannot_do_is_a_config_error(change: dict[str, Any], message: str) -> None:
    cfg = {k: v for k, v in {**config("amazon.titan-embed-text-v2:0"), **change}.items() if v is not None}
    bedrock = Bedrock()
    _, error = read_through(cfg, bedrock)
    assert error is not None and message in str(error), error
    assert bedrock.requests == [] and KEY not in str(error)


def test_the_dry_run_prices_it_as_normal_requests_only() -> None:
    """Bedrock embeddings have no batch mode here: the dry run offers no batch price for them."""
    import asyncio

    from connector.standalone.command import run as standalone_run
    from tests.conftest import mock_transport

    bedrock = Bedrock()
    result = asyncio.run(standalone_run(config("cohere.embed-english-v3", embeddings={"inputs_per_request": 3}),
                                        None, dry_run=True, transport_factory=mock_transport(bedrock)))
    report = result.report or ""
    assert bedrock.requests == []
    assert "rows: 5; requests: 2 or more (up to 3 rows each)" in report and "output tokens: ~0" in report
    tokens = int(report.split("input tokens: ~")[1].split(" ")[0])
    assert f"estimated cost: ~{float(tokens):.4f} as normal requests (prices of" in report  # 1 per token here
    assert "batch" not in report.split("estimated cost:")[1].split("\n")[0]
