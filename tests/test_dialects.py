"""Every API shape over httpx.MockTransport: the exact URL, headers and body sent, and the
normalisation of replies, stream events and error bodies.

Replies and events are built from each provider's published examples; every test says
where its example came from. The local llama.cpp server speaks chat completions,
Responses and Anthropic Messages for real (tests/test_live_dialects.py); Gemini, Azure,
Bedrock and Vertex are covered here only.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connector import errors
from connector.airbyte import commands
from connector.config.load import load_config
from connector.config.model import SourceConfig
from connector.config.parts import parts_of
from connector.secrets import config_secrets
from tests.conftest import catalog_for, chat_reply, client_for, dialect_of, mock_transport, template_for

pytestmark = pytest.mark.timeout(20)

KEY = "sk-dialect-test-key-0123"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["sentiment", "stars"],
          "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                         "stars": {"type": "integer", "minimum": 1, "maximum": 5}}}
ANSWER = {"sentiment": "positive", "stars": 5}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers every request with ``answer`` and keeps the requests."""

    def __init__(self, answer: httpx.Response | Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request) if callable(self.answer) else self.answer

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.requests[-1].content))

    @property
    def url(self) -> str:
        return str(self.requests[-1].url)

    @property
    def headers(self) -> httpx.Headers:
        return self.requests[-1].headers


def config(shape: str, **raw: Any) -> SourceConfig:
    base: dict[str, Any] = {"api_compatibility": shape, "api_key": KEY, "model": "m",
                            "prompt": "Review: {{t}}", "system_prompt": "Answer briefly.",
                            "input": {"rows": [{"t": "great"}]}, "max_retries": 0}
    base.update(raw)
    return load_config({k: v for k, v in base.items() if v is not None})


def sse(*events: Any, named: bool = False) -> bytes:
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        prefix = f"event: {json.loads(data)['type']}\n" if named and not isinstance(event, str) else ""
        out.append(f"{prefix}data: {data}\n\n")
    return "".join(out).encode()


def streamed(payload: bytes, chunk: int = 5) -> Handler:
    """An SSE body written in small pieces, so events split across reads."""

    def handler(_: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), chunk):
                yield payload[i:i + chunk]

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return handler


async def call(cfg: SourceConfig, handler: Handler, dialect: Any = None) -> Any:
    """One completion for the config's first row, through the real client."""
    client = client_for(cfg, mock_transport(handler)(cfg), dialect=dialect)
    d = client.dialect
    body = d.build(template_for(cfg, d.conversation_key).render({"t": "great"}))
    return await client.complete(body)


def message_of(completion: Any) -> dict[str, Any]:
    return dict(completion.reply["choices"][0]["message"])


# OpenAI Responses ------------------------------------------------------------------------

# The example response of "Create a model response" in the OpenAI API reference
# (platform.openai.com/docs/api-reference/responses/create), trimmed to the fields read.
RESPONSES_REPLY = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
    "created_at": 1741476542, "status": "completed", "error": None, "incomplete_details": None,
    "model": "gpt-4.1-2025-04-14",
    "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [],
                             "text": "In a peaceful grove beneath a silver moon..."}]}],
    "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123},
}


async def test_responses_request_url_headers_and_body() -> None:
    """Request fields per the Responses API reference: input items, max_output_tokens,
    reasoning.effort, text.format; store false by default."""
    rec = Recorder(httpx.Response(200, json=RESPONSES_REPLY))
    cfg = config("openai_responses", url="https://api.example.com/v1",
                 parameters={"max_tokens": 50, "temperature": 0.2, "reasoning_effort": "low", "user": "u-1",
                             "metadata": {"job": "reviews"}, "top_logprobs": 2})
    await call(cfg, rec)
    assert rec.url == "https://api.example.com/v1/responses"
    assert rec.headers["authorization"] == f"Bearer {KEY}"
    assert rec.body == {
        "model": "m",
        "input": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Review: great"}],
        "max_output_tokens": 50, "temperature": 0.2, "reasoning": {"effort": "low"}, "user": "u-1",
        "metadata": {"job": "reviews"}, "top_logprobs": 2, "include": ["message.output_text.logprobs"],
        "store": False, "stream": False,  # said, not implied: transformers serve streams when it is omitted
    }


async def test_responses_output_schema_is_text_format_and_reply_is_normalised() -> None:
    """text.format json_schema as in OpenAI's Structured Outputs guide (Responses tab);
    the reply is the API reference example above."""
    rec = Recorder(httpx.Response(200, json=RESPONSES_REPLY))
    completion = await call(config("openai_responses", output_schema=SCHEMA, stream=False), rec)
    assert rec.body["text"] == {"format": {"type": "json_schema", "name": "structured_output",
                                           "schema": SCHEMA, "strict": True}}
    reply = completion.reply
    assert message_of(completion)["content"] == "In a peaceful grove beneath a silver moon..."
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 36, "completion_tokens": 87, "total_tokens": 123,
                              "prompt_tokens_details": {"cached_tokens": 0},
                              "completion_tokens_details": {"reasoning_tokens": 0}}
    assert reply["model"] == "gpt-4.1-2025-04-14"


@pytest.mark.parametrize(("patch", "finish"), [
    ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, "length"),
    ({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}, "content_filter"),
])
async def test_responses_incomplete_maps_finish_reason(patch: dict[str, Any], finish: str) -> None:
    """status/incomplete_details.reason values from the Responses API reference."""
    completion = await call(config("openai_responses"), Recorder(httpx.Response(200, json={**RESPONSES_REPLY,
                                                                                         **patch})))
    assert completion.reply["choices"][0]["finish_reason"] == finish


async def test_responses_function_call_becomes_tool_calls() -> None:
    """A function_call output item, from OpenAI's function-calling guide (Responses)."""
    reply = {**RESPONSES_REPLY, "output": [{"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz",
                                            "name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}]}
    completion = await call(config("openai_responses"), Recorder(httpx.Response(200, json=reply)))
    assert message_of(completion)["tool_calls"] == [
        {"id": "call_12345xyz", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}]
    assert completion.reply["choices"][0]["finish_reason"] == "tool_calls"


# The event sequence of OpenAI's "Streaming API responses" guide and streaming events reference.
RESPONSES_EVENTS = [
    {"type": "response.created", "sequence_number": 0,
     "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}},
    {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
     "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}},
    {"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_1", "output_index": 0,
     "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
    {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0,
     "content_index": 0, "delta": "Bon"},
    {"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1", "output_index": 0,
     "content_index": 0, "delta": "jour é👍"},
    {"type": "response.output_text.done", "sequence_number": 5, "item_id": "msg_1", "output_index": 0,
     "content_index": 0, "text": "Bonjour é👍"},
    {"type": "response.completed", "sequence_number": 6,
     "response": {**RESPONSES_REPLY, "id": "resp_1", "output": [
         {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
          "content": [{"type": "output_text", "text": "Bonjour é👍", "annotations": []}]}]}},
]


async def test_responses_stream_is_assembled() -> None:
    """Streaming: stream true in the body, deltas for time to first token, response.completed for the answer."""
    rec = Recorder(streamed(sse(*RESPONSES_EVENTS, named=True)))
    completion = await call(config("openai_responses", stream=True), rec)
    assert rec.body["stream"] is True and "stream_options" not in rec.body
    assert message_of(completion)["content"] == "Bonjour é👍"
    assert completion.reply["usage"]["total_tokens"] == 123
    assert completion.ttft_ms is not None


@pytest.mark.parametrize(("events", "fragment"), [
    (RESPONSES_EVENTS[:5], "before response.completed"),
    ([*RESPONSES_EVENTS[:3], {"type": "error", "code": "server_error", "message": "The server had an error",
                              "param": None, "sequence_number": 3}], "The server had an error"),
    ([*RESPONSES_EVENTS[:3], {"type": "response.failed", "sequence_number": 3, "response": {
        "id": "resp_1", "status": "failed", "output": [],
        "error": {"code": "server_error", "message": "The model failed to generate a response."}}}],
     "failed to generate"),
])
async def test_responses_stream_errors_are_bad_replies(events: list[Any], fragment: str) -> None:
    """The error and response.failed events of the Responses streaming reference; a cut stream."""
    with pytest.raises(errors.BadReply, match=fragment):
        await call(config("openai_responses", stream=True), Recorder(streamed(sse(*events, named=True))))


@pytest.mark.parametrize("param", ["seed", "stop", "frequency_penalty"])
def test_responses_rejects_parameters_it_cannot_express(param: str) -> None:
    value = "END" if param == "stop" else 1
    cfg = config("openai_responses", parameters={param: value})
    with pytest.raises(errors.ConfigError, match=f"openai_responses.*'{param}'"):
        dialect_of(cfg)


def test_what_a_shape_cannot_express_is_a_config_error_at_the_start_of_check_discover_and_read() -> None:
    """The run's dialect is built before anything is read or sent; loading alone does not build one."""
    raw = {"api_compatibility": "openai_responses", "api_key": KEY, "model": "m", "prompt": "Review: {{t}}",
           "input": {"rows": [{"t": "great"}]}, "parameters": {"seed": 1}}
    load_config(raw)
    rec = Recorder(httpx.Response(200, json=RESPONSES_REPLY))

    async def collect(messages: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m async for m in messages]

    [status] = asyncio.run(collect(commands.check(raw, mock_transport(rec))))
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "openai_responses" in status["connectionStatus"]["message"]
    assert "'seed'" in status["connectionStatus"]["message"]
    for command in (commands.discover(raw, mock_transport(rec)),
                    commands.read(raw, catalog_for(), None, mock_transport(rec))):
        with pytest.raises(errors.ConfigError, match=r"the openai_responses API has no equivalent of 'seed'"):
            asyncio.run(collect(command))
    assert rec.requests == []


# Anthropic Messages -----------------------------------------------------------------------

# The example response of "Messages" in Anthropic's API reference (docs.anthropic.com/en/api/messages).
ANTHROPIC_REPLY = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}


async def test_anthropic_request_url_headers_and_body() -> None:
    """Headers x-api-key and anthropic-version: 2023-06-01, system at the top level, max_tokens
    required (default 1024), stop_sequences and metadata.user_id, per the Messages API reference."""
    rec = Recorder(httpx.Response(200, json=ANTHROPIC_REPLY))
    cfg = config("anthropic_messages", model="claude-sonnet-4-20250514",
                 parameters={"temperature": 0.5, "stop": "END", "user": "u-1", "tool_choice": "auto"})
    completion = await call(cfg, rec)
    assert rec.url == "https://api.anthropic.com/v1/messages"
    assert rec.headers["x-api-key"] == KEY
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in rec.headers
    assert rec.body == {"model": "claude-sonnet-4-20250514", "system": "Answer briefly.",
                        "messages": [{"role": "user", "content": "Review: great"}], "max_tokens": 1024,
                        "temperature": 0.5, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
                        "tool_choice": {"type": "auto"}}
    assert message_of(completion) == {"role": "assistant", "content": "Hi! My name is Claude."}
    assert completion.reply["choices"][0]["finish_reason"] == "stop"
    assert completion.reply["usage"] == {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598}


async def test_anthropic_output_schema_is_a_forced_tool_whose_input_is_the_answer() -> None:
    """Forcing a tool (tool_choice {"type": "tool", "name": ...}) for JSON output, as Anthropic's
    tool-use guide describes ("JSON mode"); the tool_use block shape is the guide's example."""
    reply = {**ANTHROPIC_REPLY, "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "structured_output", "input": ANSWER}]}
    rec = Recorder(httpx.Response(200, json=reply))
    completion = await call(config("anthropic_messages", output_schema=SCHEMA, parameters={"max_tokens": 64}), rec)
    assert rec.body["tools"] == [{"name": "structured_output", "description": "Record the answer in this exact "
                                  "structure.", "input_schema": SCHEMA}]
    assert rec.body["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert rec.body["max_tokens"] == 64
    assert json.loads(message_of(completion)["content"]) == ANSWER
    assert "tool_calls" not in message_of(completion)
    assert completion.reply["choices"][0]["finish_reason"] == "stop"


async def test_anthropic_tool_use_and_thinking_blocks() -> None:
    """tool_use (tool-use guide) and thinking blocks (extended-thinking guide) in one reply;
    cache reads count as prompt tokens (prompt-caching guide's usage fields)."""
    reply = {**ANTHROPIC_REPLY, "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "Let me check the weather.", "signature": "EqQB..."},
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}],
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5,
                  "output_tokens": 20}}
    completion = await call(config("anthropic_messages"), Recorder(httpx.Response(200, json=reply)))
    message = message_of(completion)
    assert message["content"] == "I'll check."
    assert message["reasoning_content"] == "Let me check the weather."
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]
    assert completion.reply["choices"][0]["finish_reason"] == "tool_calls"
    assert completion.reply["usage"]["prompt_tokens"] == 115


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "length"), ("stop_sequence", "stop"),
                                              ("refusal", "content_filter"), ("pause_turn", "stop"),
                                              ("something_new", "other")])
async def test_anthropic_stop_reasons_map_to_one_vocabulary(stop: str, finish: str) -> None:
    """stop_reason values from Anthropic's "Handling stop reasons" guide."""
    completion = await call(config("anthropic_messages"),
                            Recorder(httpx.Response(200, json={**ANTHROPIC_REPLY, "stop_reason": stop})))
    assert completion.reply["choices"][0]["finish_reason"] == finish


# The event flow of Anthropic's "Streaming Messages" guide (basic streaming request).
ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message",
                                          "role": "assistant", "content": [], "model": "claude-sonnet-4-20250514",
                                          "stop_reason": None, "stop_sequence": None,
                                          "usage": {"input_tokens": 25, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
]


async def test_anthropic_stream_is_assembled() -> None:
    rec = Recorder(streamed(sse(*ANTHROPIC_EVENTS, named=True), chunk=3))
    completion = await call(config("anthropic_messages", stream=True), rec)
    assert rec.body["stream"] is True and "stream_options" not in rec.body
    assert message_of(completion)["content"] == "Hello!"
    assert completion.reply["choices"][0]["finish_reason"] == "stop"
    assert completion.reply["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}
    assert completion.reply["model"] == "claude-sonnet-4-20250514"
    assert completion.ttft_ms is not None


async def test_anthropic_stream_with_forced_output_tool() -> None:
    """input_json_delta events of a tool_use block, from the guide's "Streaming request with tool use"."""
    events = [ANTHROPIC_EVENTS[0],
              {"type": "content_block_start", "index": 0, "content_block": {
                  "type": "tool_use", "id": "toolu_1", "name": "structured_output", "input": {}}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
              {"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "{\"sentiment\": \"posi"}},
              {"type": "content_block_delta", "index": 0,
               "delta": {"type": "input_json_delta", "partial_json": "tive\", \"stars\": 5}"}},
              {"type": "content_block_stop", "index": 0},
              {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
               "usage": {"output_tokens": 89}},
              {"type": "message_stop"}]
    completion = await call(config("anthropic_messages", stream=True, output_schema=SCHEMA),
                            Recorder(streamed(sse(*events, named=True))))
    assert json.loads(message_of(completion)["content"]) == ANSWER
    assert completion.reply["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("events", "fragment"), [
    (ANTHROPIC_EVENTS[:5], "before message_stop"),
    ([*ANTHROPIC_EVENTS[:4], {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}],
     "Overloaded"),
])
async def test_anthropic_stream_errors_are_bad_replies(events: list[Any], fragment: str) -> None:
    """The error event example (overloaded_error) of the Streaming Messages guide; a cut stream."""
    with pytest.raises(errors.BadReply, match=fragment):
        await call(config("anthropic_messages", stream=True), Recorder(streamed(sse(*events, named=True))))


async def test_anthropic_error_body_is_read() -> None:
    """Error shape from Anthropic's "Errors" page: {"type": "error", "error": {"type", "message"}}."""
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    with pytest.raises(errors.HTTPStatusError) as info:
        await call(config("anthropic_messages"), Recorder(httpx.Response(401, json=body)))
    assert "invalid x-api-key (authentication_error)" in str(info.value)
    assert KEY not in str(info.value)


async def test_anthropic_models_list() -> None:
    """GET /v1/models with the same headers; the List Models reference's response shape."""
    rec = Recorder(httpx.Response(200, json={"data": [{"type": "model", "id": "claude-sonnet-4-20250514",
                                                       "display_name": "Claude Sonnet 4"}],
                                             "has_more": False, "first_id": "x", "last_id": "x"}))
    cfg = config("anthropic_messages")
    client = client_for(cfg, mock_transport(rec)(cfg))
    assert await client.list_models() == ["claude-sonnet-4-20250514"]
    assert rec.url == "https://api.anthropic.com/v1/models"
    assert rec.headers["x-api-key"] == KEY and rec.headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(("params", "fragment"), [
    ({"seed": 1}, "'seed'"), ({"response_format": {"type": "json_object"}}, "use output_schema"),
    ({"reasoning_effort": "low"}, "thinking"), ({"temperature": 1.5}, "0 to 1"),
])
def test_anthropic_rejects_what_it_cannot_express(params: dict[str, Any], fragment: str) -> None:
    cfg = config("anthropic_messages", parameters=params)
    with pytest.raises(errors.ConfigError, match=fragment):
        dialect_of(cfg)


# Gemini generateContent --------------------------------------------------------------------

# The response shape of "generateContent" in the Gemini API reference (ai.google.dev/api/generate-content).
GEMINI_REPLY = {
    "candidates": [{"content": {"parts": [{"text": "AI learns patterns from data."}], "role": "model"},
                    "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 7, "totalTokenCount": 15,
                      "thoughtsTokenCount": 0},
    "modelVersion": "gemini-2.5-flash", "responseId": "mb8oaJ6fJ9OaxN8P6dbN4QE",
}


async def test_gemini_request_url_headers_and_body() -> None:
    """URL with the model and :generateContent, x-goog-api-key header, contents/parts, systemInstruction
    and generationConfig, as in the Gemini API reference's curl examples."""
    rec = Recorder(httpx.Response(200, json=GEMINI_REPLY))
    cfg = config("gemini_generate_content", model="gemini-2.5-flash",
                 parameters={"max_tokens": 100, "temperature": 0.3, "top_p": 0.9, "stop": ["END"], "seed": 7,
                             "reasoning_effort": "low"})
    completion = await call(cfg, rec)
    assert rec.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.headers["x-goog-api-key"] == KEY and "authorization" not in rec.headers
    assert rec.body == {
        "contents": [{"role": "user", "parts": [{"text": "Review: great"}]}],
        "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
        "generationConfig": {"temperature": 0.3, "topP": 0.9, "seed": 7, "maxOutputTokens": 100,
                             "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 1024}},
    }
    assert message_of(completion)["content"] == "AI learns patterns from data."
    assert completion.reply["choices"][0]["finish_reason"] == "stop"
    assert completion.reply["usage"] == {"prompt_tokens": 8, "completion_tokens": 7, "total_tokens": 15,
                                         "completion_tokens_details": {"reasoning_tokens": 0}}
    assert completion.reply["model"] == "gemini-2.5-flash"


async def test_gemini_output_schema_is_response_schema() -> None:
    """responseMimeType + responseSchema with upper-case types and propertyOrdering, as in the Gemini
    structured-output guide's REST example."""
    rec = Recorder(httpx.Response(200, json=GEMINI_REPLY))
    schema = {**SCHEMA, "properties": {**SCHEMA["properties"], "note": {"type": ["string", "null"]}}}
    await call(config("gemini_generate_content", output_schema=schema), rec)
    assert rec.body["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "required": ["sentiment", "stars"], "propertyOrdering": ["sentiment", "stars", "note"],
        "properties": {"sentiment": {"type": "STRING", "enum": ["positive", "negative", "neutral"]},
                       "stars": {"type": "INTEGER", "minimum": 1, "maximum": 5},
                       "note": {"type": "STRING", "nullable": True}}}}


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                                ("RECITATION", "content_filter"), ("OTHER", "other")])
async def test_gemini_finish_reasons(reason: str, finish: str) -> None:
    """FinishReason enum of the Gemini API reference."""
    reply = {**GEMINI_REPLY, "candidates": [{**GEMINI_REPLY["candidates"][0], "finishReason": reason}]}
    completion = await call(config("gemini_generate_content"), Recorder(httpx.Response(200, json=reply)))
    assert completion.reply["choices"][0]["finish_reason"] == finish


async def test_gemini_function_call_and_blocked_prompt() -> None:
    """functionCall parts (function-calling guide) and a prompt blocked by promptFeedback.blockReason
    (GenerateContentResponse reference: no candidates)."""
    call_reply = {**GEMINI_REPLY, "candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]}, "finishReason": "STOP"}]}
    completion = await call(config("gemini_generate_content"), Recorder(httpx.Response(200, json=call_reply)))
    assert message_of(completion)["tool_calls"][0]["function"] == {"name": "get_weather",
                                                                   "arguments": "{\"location\":\"Paris\"}"}
    assert completion.reply["choices"][0]["finish_reason"] == "tool_calls"
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8}}
    completion = await call(config("gemini_generate_content"), Recorder(httpx.Response(200, json=blocked)))
    assert completion.reply["choices"][0]["finish_reason"] == "content_filter"


async def test_gemini_stream_url_and_assembly() -> None:
    """streamGenerateContent?alt=sse: each event a partial GenerateContentResponse, the last with
    finishReason and usageMetadata, no end marker (Gemini API reference, streaming)."""
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "AI learns"}], "role": "model"}, "index": 0}],
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
        {"candidates": [{"content": {"parts": [{"text": " patterns."}], "role": "model"}, "finishReason": "STOP",
                         "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12},
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
    ]
    rec = Recorder(streamed(sse(*chunks)))
    completion = await call(config("gemini_generate_content", model="gemini-2.5-flash", stream=True), rec)
    assert rec.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                       ":streamGenerateContent?alt=sse")
    assert "stream" not in rec.body and "model" not in rec.body
    assert message_of(completion)["content"] == "AI learns patterns."
    assert completion.reply["usage"]["total_tokens"] == 12
    with pytest.raises(errors.BadReply, match="finishReason"):
        await call(config("gemini_generate_content", stream=True), Recorder(streamed(sse(chunks[0]))))


async def test_gemini_error_body_and_models() -> None:
    """Error shape {"error": {"code", "message", "status"}} from Google's API error model (a bad key);
    models.list's {"models": [{"name": "models/..."}]}."""
    bad_key = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                         "status": "INVALID_ARGUMENT"}}
    with pytest.raises(errors.HTTPStatusError) as info:
        await call(config("gemini_generate_content"), Recorder(httpx.Response(400, json=bad_key)))
    assert "API key not valid. Please pass a valid API key. (INVALID_ARGUMENT)" in str(info.value)
    rec = Recorder(httpx.Response(200, json={"models": [{"name": "models/gemini-2.5-flash",
                                                         "displayName": "Gemini 2.5 Flash"}]}))
    cfg = config("gemini_generate_content")
    assert await client_for(cfg, mock_transport(rec)(cfg)).list_models() == ["gemini-2.5-flash"]
    assert rec.url == "https://generativelanguage.googleapis.com/v1beta/models"


def test_gemini_rejects_user_and_needs_a_model() -> None:
    with pytest.raises(errors.ConfigError, match=r"gemini_generate_content.*'user'"):
        dialect_of(config("gemini_generate_content", parameters={"user": "u"}))
    with pytest.raises(errors.ConfigError, match="model"):
        dialect_of(config("gemini_generate_content", model=None))


# Azure OpenAI -----------------------------------------------------------------------------


async def test_azure_url_api_key_header_and_deployment_from_model_mapping() -> None:
    """POST https://{resource}.openai.azure.com/openai/deployments/{deployment}/chat/completions
    ?api-version=... with an api-key header (Azure OpenAI REST reference, chat completions)."""
    rec = Recorder(httpx.Response(200, json=chat_reply("hi")))
    cfg = config("azure_openai", model="gpt-4o-mini", azure={"resource": "my-res"},
                 model_mapping={"gpt-4o-mini": "prod-4o-mini"})
    await call(cfg, rec)
    assert rec.url == ("https://my-res.openai.azure.com/openai/deployments/prod-4o-mini/chat/completions"
                       "?api-version=2024-10-21")
    assert rec.headers["api-key"] == KEY and "authorization" not in rec.headers
    assert rec.body["model"] == "prod-4o-mini"


async def test_azure_v1_api_names_the_deployment_in_the_body() -> None:
    """The v1 API: {endpoint}/openai/v1/chat/completions, model = deployment (openai-node docs/azure.md)."""
    rec = Recorder(httpx.Response(200, json=chat_reply("hi")))
    cfg = config("azure_openai", azure={"endpoint": "https://my-res.cognitiveservices.azure.com/",
                                        "deployment": "dep-1", "api_version": "v1"})
    await call(cfg, rec)
    assert rec.url == "https://my-res.cognitiveservices.azure.com/openai/v1/chat/completions"
    assert rec.body["model"] == "dep-1"


async def test_azure_deployment_not_found_error_is_read() -> None:
    """Azure's DeploymentNotFound 404 body, as quoted in Microsoft Q&A threads about it."""
    body = {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not "
                      "exist. If you created the deployment within the last 5 minutes, please wait a moment and "
                      "try again."}}
    with pytest.raises(errors.HTTPStatusError, match="API deployment for this resource does not exist"):
        await call(config("azure_openai", azure={"resource": "r"}), Recorder(httpx.Response(404, json=body)))


def test_azure_needs_a_resource() -> None:
    with pytest.raises(errors.ConfigError, match=r"azure\.resource or azure\.endpoint"):
        config("azure_openai")


# Amazon Bedrock -----------------------------------------------------------------------------


async def test_bedrock_api_key_is_a_bearer_token_on_the_openai_endpoint() -> None:
    """base_url https://bedrock-runtime.{region}.amazonaws.com/openai/v1 with a Bedrock API key
    (AWS Bedrock user guide, "Invoke a model with the OpenAI Chat Completions API")."""
    rec = Recorder(httpx.Response(200, json=chat_reply("hello", model="openai.gpt-oss-20b-1:0")))
    cfg = config("amazon_bedrock", model="openai.gpt-oss-20b-1:0", bedrock={"region": "us-west-2"})
    completion = await call(cfg, rec)
    assert rec.url == "https://bedrock-runtime.us-west-2.amazonaws.com/openai/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {KEY}"
    assert message_of(completion)["content"] == "hello"
    client = client_for(cfg, mock_transport(rec)(cfg))
    assert await client.list_models() is None and len(rec.requests) == 1  # bedrock-runtime has no /models


async def test_bedrock_sigv4_signs_each_request_with_botocore() -> None:
    """SigV4 (service bedrock, the region) from access keys, through botocore."""
    pytest.importorskip("botocore")
    rec = Recorder(httpx.Response(200, json=chat_reply("signed")))
    cfg = config("amazon_bedrock", api_key=None, bedrock={
        "region": "us-west-2", "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session_token": "tok-123"})
    await call(cfg, rec)
    auth = rec.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-west-2/bedrock/aws4_request" in auth
    assert "SignedHeaders=" in auth and "host" in auth and "x-amz-date" in auth
    assert rec.headers["x-amz-security-token"] == "tok-123"
    assert len(auth.rsplit("Signature=", 1)[1]) == 64
    assert "wJalrXUtnFEMI" not in auth
    assert "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" in config_secrets(cfg)


def test_bedrock_without_botocore_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # as if the extra were not installed
    cfg = config("amazon_bedrock", api_key=None, bedrock={"region": "us-east-1"})
    with pytest.raises(errors.ConfigError, match=r"source-openai-compatible\[bedrock\]"):
        dialect_of(cfg)


# Google Vertex AI ----------------------------------------------------------------------------


class FakeTokenEndpoint:
    """google-auth's transport Request interface, answering the OAuth token refresh."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        self.calls.append({"url": url, "method": method})

        class Response:
            status = 200
            headers: dict[str, str] = {}  # noqa: RUF012
            data = json.dumps({"access_token": "ya29.test-token", "expires_in": 3600,
                               "token_type": "Bearer"}).encode()

        return Response()


USER_CREDENTIALS = json.dumps({"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
                               "client_secret": "csecret-123", "refresh_token": "1//refresh-123"})


async def test_vertex_url_and_oauth_token_from_credentials() -> None:
    """POST https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/
    publishers/google/models/{model}:generateContent with a bearer token (Vertex AI REST reference)."""
    pytest.importorskip("google.auth")
    from connector.dialects.vertex import VertexDialect

    rec = Recorder(httpx.Response(200, json=GEMINI_REPLY))
    cfg = config("google_vertex", api_key=None, model="gemini-2.5-flash",
                 vertex={"project": "my-proj", "location": "us-central1", "credentials_json": USER_CREDENTIALS})
    tokens = FakeTokenEndpoint()
    dialect = VertexDialect(parts_of(cfg).request, token_request=tokens)
    completion = await call(cfg, rec, dialect=dialect)
    assert rec.url == ("https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/"
                       "publishers/google/models/gemini-2.5-flash:generateContent")
    assert rec.headers["authorization"] == "Bearer ya29.test-token"
    assert message_of(completion)["content"] == "AI learns patterns from data."
    await call(cfg, rec, dialect=dialect)
    assert len(tokens.calls) == 1  # the token is reused until it expires
    assert "1//refresh-123" in config_secrets(cfg) and "csecret-123" in config_secrets(cfg)


def test_vertex_global_location_and_express_mode() -> None:
    """Location global has no region prefix; express mode (an API key, no project) uses
    aiplatform.googleapis.com/v1/publishers/google with x-goog-api-key (Vertex AI express mode docs)."""
    pytest.importorskip("google.auth")
    cfg = config("google_vertex", api_key=None, vertex={"project": "p", "location": "global"})
    assert dialect_of(cfg).endpoint_url == ("https://aiplatform.googleapis.com/v1/projects/p/locations/global/"
                                            "publishers/google/models/m:generateContent")
    express = config("google_vertex", model="gemini-2.5-flash")
    assert dialect_of(express).endpoint_url == ("https://aiplatform.googleapis.com/v1/publishers/google/models/"
                                                "gemini-2.5-flash:generateContent")
    headers = asyncio.run(dialect_of(express).headers("POST", "u", b"{}"))
    assert headers["x-goog-api-key"] == KEY


def test_vertex_needs_a_project_and_valid_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.ConfigError, match=r"vertex\.project"):
        config("google_vertex", api_key=None)
    with pytest.raises(errors.ConfigError, match="not valid JSON"):
        config("google_vertex", api_key=None, vertex={"project": "p", "credentials_json": "{nope"})
    monkeypatch.setitem(sys.modules, "google.auth", None)
    cfg = config("google_vertex", api_key=None, vertex={"project": "p"})
    with pytest.raises(errors.ConfigError, match=r"source-openai-compatible\[vertex\]"):
        dialect_of(cfg)


# Providers, mapping, parameters --------------------------------------------------------------


@pytest.mark.parametrize(("provider", "url", "shape"), [
    ("groq", "https://api.groq.com/openai/v1/chat/completions", "openai_chat_completions"),
    ("ollama", "http://localhost:11434/v1/chat/completions", "openai_chat_completions"),
    ("sglang", "http://localhost:30000/v1/chat/completions", "openai_chat_completions"),
    ("gemini-openai", "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
     "openai_chat_completions"),
    ("anthropic", "https://api.anthropic.com/v1/messages", "anthropic_messages"),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent",
     "gemini_generate_content"),
])
def test_provider_presets_fill_url_and_shape(provider: str, url: str, shape: str) -> None:
    cfg = load_config({"provider": provider, "api_key": KEY, "model": "m", "prompt": "x",
                       "input": {"rows": [{"a": 1}]}})
    assert cfg.endpoint.shape == shape
    assert dialect_of(cfg).endpoint_url == url


def test_provider_rules() -> None:
    base = {"model": "m", "prompt": "x", "input": {"rows": [{"a": 1}]}}
    with pytest.raises(errors.ConfigError, match="provider 'mistral' needs an API key"):
        load_config({**base, "provider": "mistral"})
    with pytest.raises(errors.ConfigError, match="provider"):
        load_config({**base, "provider": "nope", "api_key": KEY})
    local = load_config({**base, "provider": "vllm"})  # a local server needs no key
    assert local.chat_url == "http://localhost:8000/v1/chat/completions"
    given = load_config({**base, "provider": "vllm", "url": "http://gpu-box:9000/v1"})  # url wins
    assert given.chat_url == "http://gpu-box:9000/v1/chat/completions"
    alias = load_config({**base, "api_compatibility": "openai_compatible", "url": "http://h:1/v1"})
    assert type(dialect_of(alias)).__name__ == "ChatDialect"


async def test_model_mapping_and_new_chat_parameters() -> None:
    """Chat completions keeps the OpenAI names; top_logprobs needs logprobs true (API reference)."""
    rec = Recorder(httpx.Response(200, json=chat_reply("x")))
    cfg = config("openai_chat_completions", url="http://127.0.0.1:9/v1", model="fast",
                 model_mapping={"fast": "Qwen/Qwen2.5-7B-Instruct"},
                 parameters={"max_completion_tokens": 9, "tool_choice": "none", "reasoning_effort": "high",
                             "user": "u", "metadata": {"a": "b"}, "top_logprobs": 3, "store": True})
    await call(cfg, rec)
    body = rec.body
    assert body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert {k: body[k] for k in ("max_completion_tokens", "tool_choice", "reasoning_effort", "user", "metadata",
                                 "top_logprobs", "logprobs", "store")} == {
        "max_completion_tokens": 9, "tool_choice": "none", "reasoning_effort": "high", "user": "u",
        "metadata": {"a": "b"}, "top_logprobs": 3, "logprobs": True, "store": True}


def test_output_schema_checks() -> None:
    with pytest.raises(errors.ConfigError, match="output_schema: must describe an object"):
        config("openai_chat_completions", output_schema={"type": "string"})
    with pytest.raises(errors.ConfigError, match="not a valid JSON Schema"):
        config("openai_chat_completions", output_schema={"type": "object", "properties": {"a": {"type": 3}}})
    with pytest.raises(errors.ConfigError, match="not both"):
        config("openai_chat_completions", output_schema=SCHEMA, parameters={"response_format": {"type": "json_object"}})
    text = config("openai_chat_completions", output_schema=json.dumps(SCHEMA))  # JSON text works too
    assert text.output_schema == SCHEMA


# The same rows give the same output columns, whichever shape answers ---------------------------


def _answer_in(shape: str, text: str) -> dict[str, Any]:
    if shape == "openai_responses":
        return {**RESPONSES_REPLY, "output": [{"type": "message", "role": "assistant",
                                               "content": [{"type": "output_text", "text": text}]}]}
    if shape == "anthropic_messages":
        return {**ANTHROPIC_REPLY, "stop_reason": "tool_use", "content": [
            {"type": "tool_use", "id": "t", "name": "structured_output", "input": json.loads(text)}]}
    if shape == "gemini_generate_content":
        return {**GEMINI_REPLY, "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                                "finishReason": "STOP"}]}
    return chat_reply(text)


SHAPES = ["openai_chat_completions", "openai_responses", "anthropic_messages", "gemini_generate_content",
          "azure_openai", "amazon_bedrock"]


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_gives_the_same_typed_columns(shape: str) -> None:
    records, catalog = await _collect(shape, json.dumps(ANSWER))
    schema = catalog["streams"][0]["json_schema"]["properties"]
    assert schema["sentiment"]["type"] == ["null", "string"]
    assert schema["stars"]["type"] == ["null", "integer"]
    assert [(r["sentiment"], r["stars"], r["_status"], r["_finish_reason"]) for r in records] == \
        [("positive", 5, "ok", "stop")] * 2
    assert set(records[0]) == set(schema)


@pytest.mark.parametrize("shape", ["openai_chat_completions", "gemini_generate_content"])
async def test_an_answer_that_does_not_match_the_schema_is_a_row_error(shape: str) -> None:
    records, _ = await _collect(shape, json.dumps(ANSWER), invalid=json.dumps({"sentiment": "great", "stars": "5"}))
    good, bad = records
    assert (good["_status"], good["sentiment"], good["stars"]) == ("ok", "positive", 5)
    assert bad["_status"] == "error"
    assert bad["sentiment"] is None and bad["stars"] is None  # typed columns never hold a wrong type
    assert bad["_error"].startswith("output_schema: the answer does not match the schema")
    assert "sentiment: 'great' is not one of" in bad["_error"]
    assert "stars: '5' is not of type 'integer'" in bad["_error"]


async def test_tool_calls_column_when_the_template_defines_tools() -> None:
    """A chat reply with tool_calls (OpenAI function-calling guide) fills _tool_calls."""
    calls = [{"id": "call_1", "type": "function", "function": {"name": "tag", "arguments": "{\"t\":\"x\"}"}}]

    def handler(_: httpx.Request) -> httpx.Response:
        reply = chat_reply("", finish_reason="tool_calls")
        reply["choices"][0]["message"]["tool_calls"] = calls
        return httpx.Response(200, json=reply)

    raw = {"url": "http://127.0.0.1:9/v1", "api_key": KEY, "model": "m", "input": {"rows": [{"t": "x"}]},
           "cache": {"enabled": False},
           "request_template": {"messages": [{"role": "user", "content": "{{t}}"}],
                                "tools": [{"type": "function", "function": {"name": "tag", "parameters": {
                                    "type": "object", "properties": {"t": {"type": "string"}}}}}]}}
    records = []
    async for message in commands.read(raw, catalog_for(), transport_factory=mock_transport(handler)):
        data = message
        if data["type"] == "RECORD":
            records.append(data["record"]["data"])
    assert records[0]["_tool_calls"] == calls
    assert records[0]["_finish_reason"] == "tool_calls"


async def _collect(shape: str, answer: str, invalid: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """discover and read of two rows ("great", "fine"); the row "fine" gets ``invalid`` when given."""

    def handler(request: httpx.Request) -> httpx.Response:
        text = invalid if invalid is not None and b"fine" in request.content else answer
        return httpx.Response(200, json=_answer_in(shape, text))

    raw = {"api_compatibility": shape, "api_key": KEY, "model": "m", "prompt": "Review: {{t}}",
           "input": {"rows": [{"t": "great"}, {"t": "fine"}]}, "output_schema": SCHEMA, "max_retries": 0,
           "cache": {"enabled": False}, "validation_retries": 0,
           "azure": {"resource": "r"} if shape == "azure_openai" else None,
           "bedrock": {"region": "us-east-1"} if shape == "amazon_bedrock" else None}
    raw = {k: v for k, v in raw.items() if v is not None}
    catalog: dict[str, Any] = {}
    async for message in commands.discover(raw, transport_factory=mock_transport(handler)):
        data = message
        if data["type"] == "CATALOG":
            catalog = data["catalog"]
    records = []
    async for message in commands.read(raw, catalog_for(), transport_factory=mock_transport(handler)):
        data = message
        if data["type"] == "RECORD":
            records.append(data["record"]["data"])
    return records, catalog


# check, per shape ----------------------------------------------------------------------------


async def _check(raw: dict[str, Any], handler: Handler) -> dict[str, Any]:
    [message] = [m async for m in commands.check(raw, transport_factory=mock_transport(handler))]
    return dict(message["connectionStatus"])


async def test_check_probes_each_shape_with_one_token() -> None:
    """check lists models where the shape has a list, then sends the shape's one-token request."""
    rec = Recorder(lambda r: httpx.Response(200, json={"data": [{"id": "claude-x"}]}) if r.method == "GET"
                   else httpx.Response(200, json=ANTHROPIC_REPLY))
    raw = {"provider": "anthropic", "api_key": KEY, "model": "claude-x", "prompt": "{{t}}",
           "input": {"rows": [{"t": "x"}]}, "stream": True}
    status = await _check(raw, rec)
    assert status["status"] == "SUCCEEDED", status
    assert "1 model(s) listed" in status["message"]
    assert rec.body["max_tokens"] == 1 and "stream" not in rec.body
    gemini = Recorder(lambda r: httpx.Response(200, json={"models": []}) if r.method == "GET"
                      else httpx.Response(200, json=GEMINI_REPLY))
    status = await _check({**raw, "provider": "gemini"}, gemini)
    assert status["status"] == "SUCCEEDED", status
    assert gemini.url.endswith("/models/claude-x:generateContent")
    assert gemini.body["generationConfig"] == {"maxOutputTokens": 1}


async def test_check_404_names_the_shape_url() -> None:
    rec = Recorder(lambda r: httpx.Response(404, json={"type": "error", "error": {
        "type": "not_found_error", "message": "Not found"}}))
    raw = {"api_compatibility": "anthropic_messages", "url": "https://gw.example.com/anthropic", "api_key": KEY,
           "model": "claude-x", "prompt": "{{t}}", "input": {"rows": [{"t": "x"}]}}
    status = await _check(raw, rec)
    assert status["status"] == "FAILED"
    assert "POST https://gw.example.com/anthropic/messages returned 404 (anthropic_messages)" in status["message"]


async def test_a_native_template_passes_through() -> None:
    """A request_template written in the shape's own form (Gemini contents) is kept as written."""
    rec = Recorder(httpx.Response(200, json=GEMINI_REPLY))
    cfg = config("gemini_generate_content", prompt=None, system_prompt=None, request_template={
        "contents": [{"role": "user", "parts": [{"text": "Review: {{t}}"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})
    await call(cfg, rec)
    assert rec.body["contents"] == [{"role": "user", "parts": [{"text": "Review: great"}]}]
    assert rec.body["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_a_normal_reply_is_read_as_is_and_only_odd_usage_is_rewritten() -> None:
    from connector.dialects.replies import normalise

    reply = chat_reply("hi")
    assert normalise(reply) is reply  # the usual reply: nothing copied on the row path
    for usage, expected in (
        ({"prompt_tokens": "5", "completion_tokens": 2}, {"prompt_tokens": 5, "completion_tokens": 2,
                                                          "total_tokens": 7}),
        ({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": True},
         {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        ({"prompt_tokens": -1, "completion_tokens": 2.0, "total_tokens": 9},
         {"prompt_tokens": None, "completion_tokens": 2, "total_tokens": 9}),
    ):
        assert normalise({**reply, "usage": usage})["usage"] == expected


def test_the_request_url_is_the_configured_one_with_or_without_extra_query() -> None:
    dialect = dialect_of(load_config({"url": "http://127.0.0.1:9/v1?api-version=1", "model": "m", "prompt": "x",
                                       "input": {"rows": [{"a": 1}]}}))
    for _ in range(2):  # asked again: the same answer
        assert dialect.prepare({"model": "m"}).url == "http://127.0.0.1:9/v1/chat/completions?api-version=1"
    assert dialect.url("/models", {"after": "x"}) == "http://127.0.0.1:9/v1/models?api-version=1&after=x"
    assert dialect.url("/models") == "http://127.0.0.1:9/v1/models?api-version=1"


@pytest.mark.parametrize("shape", ["openai_chat_completions", "openai_responses", "gemini_generate_content"])
def test_the_output_schema_part_built_once_per_run_is_each_body_s_own(shape: str) -> None:
    # The schema's request part is built once per run (the strict check and Gemini's conversion walk the
    # schema); a body that changes its copy must not change the next row's.
    settings = config(shape, output_schema=SCHEMA, url="https://api.example/v1")
    dialect = dialect_of(settings)
    templated = {"messages": [{"role": "user", "content": "Review: great"}]}
    first, second = dialect.build(templated), dialect.build(templated)
    assert first == second == dialect_of(settings).build(templated)
    part = {"openai_chat_completions": ("response_format",), "openai_responses": ("text", "format"),
            "gemini_generate_content": ("generationConfig", "responseSchema")}[shape]
    owned = first
    for key in part:
        owned = owned[key]
    owned.clear()
    assert second == dialect_of(settings).build(templated)


def test_the_headers_built_once_per_run_are_each_request_s_own() -> None:
    dialect = dialect_of(config("openai_chat_completions", headers={"X-Tenant": "t1"}))
    sent = asyncio.run(dialect.headers("POST", "https://api.example/v1/chat/completions", b"{}"))
    assert sent == {"Content-Type": "application/json", "Accept": "application/json",
                    "Authorization": f"Bearer {KEY}", "X-Tenant": "t1"}
    sent["X-Added"] = "by a caller"
    again = asyncio.run(dialect.headers("POST", "https://api.example/v1/chat/completions", b"{}"))
    assert "X-Added" not in again
    listing = asyncio.run(dialect.headers("GET", "https://api.example/v1/models", None))
    assert listing == {"Accept": "application/json", "Authorization": f"Bearer {KEY}", "X-Tenant": "t1"}
