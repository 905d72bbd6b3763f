"""The configured url, as sent: its query kept on every request, its user:password@ as Basic auth."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from connector.config import specification
from connector.config.load import load_config
from connector.config.model import SourceConfig
from connector.errors import ConfigError
from tests.conftest import chat_reply, client_for, dialect_of, mock_transport, template_for

KEY = "sk-address-test-key-0123"


def config(url: str, shape: str = "openai_chat_completions", **raw: Any) -> SourceConfig:
    base: dict[str, Any] = {"url": url, "api_compatibility": shape, "api_key": KEY, "model": "m",
                            "prompt": "Review: {{t}}", "input": {"rows": [{"t": "great"}]}, "max_retries": 0}
    base.update(raw)
    return load_config({k: v for k, v in base.items() if v is not None})


def sent(cfg: SourceConfig) -> list[httpx.Request]:
    """The requests of a model listing and one completion, through the real client."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(200, json=chat_reply("fine"))

    async def go() -> None:
        client = client_for(cfg, mock_transport(handler)(cfg))
        body = client.dialect.build(template_for(cfg).render({"t": "great"}))
        await client.list_models()
        await client.complete(body)

    asyncio.run(go())
    return seen


@pytest.mark.parametrize(
    ("url", "chat", "models"),
    [
        ("https://gw.example.com/v1/chat/completions?api-version=2024-10-21",
         "https://gw.example.com/v1/chat/completions?api-version=2024-10-21",
         "https://gw.example.com/v1/models?api-version=2024-10-21"),
        ("https://gw.example.com/v1?key=abc123", "https://gw.example.com/v1/chat/completions?key=abc123",
         "https://gw.example.com/v1/models?key=abc123"),
        ("https://gw.example.com/v1/?a=1&b=two%20words", "https://gw.example.com/v1/chat/completions?a=1&b=two%20words",
         "https://gw.example.com/v1/models?a=1&b=two%20words"),
    ],
)
def test_a_query_in_url_is_kept_on_every_request(url: str, chat: str, models: str) -> None:
    listing, completion = sent(config(url))
    assert str(listing.url) == models
    assert str(completion.url) == chat


@pytest.mark.parametrize(
    ("shape", "url", "extra", "expected"),
    [
        ("openai_responses", "https://gw.example.com/v1?tenant=t1", {}, "https://gw.example.com/v1/responses?tenant=t1"),
        ("anthropic_messages", "https://gw.example.com/v1?tenant=t1", {},
         "https://gw.example.com/v1/messages?tenant=t1"),
        ("gemini_generate_content", "https://gw.example.com/v1beta?tenant=t1", {},
         "https://gw.example.com/v1beta/models/m:generateContent?tenant=t1"),
        ("gemini_generate_content", "https://gw.example.com/v1beta?tenant=t1", {"stream": True},
         "https://gw.example.com/v1beta/models/m:streamGenerateContent?tenant=t1&alt=sse"),
        ("azure_openai", "https://apim.example.com/ai?subscription=s1", {},
         "https://apim.example.com/ai/openai/deployments/m/chat/completions?subscription=s1&api-version=2024-10-21"),
        ("azure_openai", "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-01-01",
         {}, "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2025-01-01"),
    ],
)
def test_every_shape_keeps_the_query(shape: str, url: str, extra: dict[str, Any], expected: str) -> None:
    dialect = dialect_of(config(url, shape, **extra))
    body = dialect.build({"messages": [{"role": "user", "content": "hi"}]})
    assert dialect.prepare(body).url == expected
    models = dialect.models_url
    assert models is None or "tenant=t1" in models or "subscription=s1" in models


@pytest.mark.parametrize(
    ("shape", "url", "expected"),
    [
        ("openai_chat_completions", "http://localhost:8000/v1", "http://localhost:8000/v1/chat/completions"),
        ("openai_chat_completions", "http://LocalHost:8000/v1/chat/completions/",
         "http://LocalHost:8000/v1/chat/completions"),
        ("azure_openai", "https://res.openai.azure.com",
         "https://res.openai.azure.com/openai/deployments/m/chat/completions?api-version=2024-10-21"),
        ("gemini_generate_content", "https://generativelanguage.googleapis.com/v1beta",
         "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent"),
    ],
)
def test_a_url_without_query_or_userinfo_is_sent_as_before(shape: str, url: str, expected: str) -> None:
    """The URL is part of the answer-cache key: it must not change under existing configs."""
    dialect = dialect_of(config(url, shape))
    assert dialect.prepare(dialect.build({"messages": [{"role": "user", "content": "hi"}]})).url == expected


def test_userinfo_is_sent_as_basic_auth_and_never_in_the_url() -> None:
    listing, completion = sent(config("https://alice:p%40ss-word@proxy.example.com/v1", api_key=None))
    for request in (listing, completion):
        assert str(request.url).startswith("https://proxy.example.com/v1/")
        assert "alice" not in str(request.url) and "ss-word" not in str(request.url)
        token = request.headers["authorization"].removeprefix("Basic ")
        assert base64.b64decode(token).decode() == "alice:p@ss-word"


def test_userinfo_and_a_key_in_its_own_header_go_together() -> None:
    dialect = dialect_of(config("https://alice:secret-pw@proxy.example.com/v1", "anthropic_messages"))
    headers = asyncio.run(dialect.headers("POST", dialect.endpoint_url, b"{}"))
    assert headers["x-api-key"] == KEY
    assert headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("extra", "named"),
    [({}, "api_key (as Bearer)"), ({"api_key": None, "headers": {"Authorization": "Bearer x-123456"}},
                                   "headers.Authorization")],
)
def test_userinfo_where_the_authorization_header_is_taken_is_a_config_error(extra: dict[str, Any],
                                                                             named: str) -> None:
    loaded = config("https://alice:secret-pw@proxy.example.com/v1", **extra)
    with pytest.raises(ConfigError) as caught:
        dialect_of(loaded)  # the run's dialect, built at the start of check, discover and read
    message = caught.value.message
    assert message.startswith("url: ") and named in message and "remove user:password@ from url" in message
    assert "secret-pw" not in message


def test_userinfo_counts_as_credentials_for_a_remote_host() -> None:
    assert config("https://alice:secret-pw@proxy.example.com/v1", api_key=None).api_key is None


def test_headers_as_a_list_of_name_and_value() -> None:
    cfg = config("http://localhost:8000/v1", headers=[{"name": "X-Tenant", "value": "acme"},
                                                      {"name": "X-Route", "value": "eu"}])
    assert cfg.headers == {"X-Tenant": "acme", "X-Route": "eu"}
    with pytest.raises(ConfigError, match="header 'X-Tenant' is given twice"):
        config("http://localhost:8000/v1", headers=[{"name": "X-Tenant", "value": "a"},
                                                    {"name": "X-Tenant", "value": "b"}])
    with pytest.raises(ConfigError, match=r"headers\.0"):
        config("http://localhost:8000/v1", headers=[{"name": "X-Tenant"}])


def test_header_values_are_airbyte_secrets_where_a_platform_looks() -> None:
    headers = specification.connection_specification()["properties"]["headers"]
    # Platforms collect secret paths through properties and items (never additionalProperties):
    # the published field is a secret as a whole (the JSON text a form enters), and so is each list value.
    assert headers["airbyte_secret"] is True
    assert headers["items"]["properties"]["value"]["airbyte_secret"] is True
    strict = specification.strict_schema()["properties"]["headers"]
    assert strict["additionalProperties"]["airbyte_secret"] is True  # the map form's values, for our own checks
