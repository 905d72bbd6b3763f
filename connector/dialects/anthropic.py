"""The Anthropic Messages API shape (``POST {base}/messages``).

Request: system messages move to the top-level ``system``; ``max_tokens`` is
required (default :data:`DEFAULT_MAX_TOKENS`); ``stop`` becomes
``stop_sequences``; ``user`` becomes ``metadata.user_id``; function tools become
``{name, description, input_schema}``; ``tool_choice`` becomes ``{type: auto |
any | none | tool}``; an output schema is a tool the model is forced to call,
whose input is the answer. Headers: ``x-api-key`` and ``anthropic-version``.
Reply: ``content`` blocks (``text``, ``tool_use``, ``thinking``), ``stop_reason``,
``usage.input_tokens`` / ``output_tokens`` (plus cache reads and writes, reported apart and
added to the prompt tokens: :func:`usage_counts`). A stream is ``message_start``, ``content_block_start`` /
``content_block_delta`` / ``content_block_stop`` per block, ``message_delta``
(stop reason, output tokens) and ``message_stop``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from connector.config.output_schema import SCHEMA_NAME
from connector.dialects.base import (
    JSON_HEADERS,
    Reply,
    chat_reply,
    chat_tools,
    generic_error_message,
    load_object,
    named_tool_choice,
    preview,
    split_system,
    tool_call,
)
from connector.dialects.openai_chat import ChatDialect
from connector.dialects.usage import CachePricing, TokenUsage, token_count, usage_from
from connector.errors import BadReply, ConfigError

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # Messages requires max_tokens; the published examples use 1024

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
           "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class AnthropicDialect(ChatDialect):
    """``POST {base}/messages`` with ``x-api-key`` and ``anthropic-version``."""

    name: ClassVar[str] = "anthropic_messages"
    CHAT_BODY: ClassVar[bool] = False
    system_key: ClassVar[str | None] = "system"
    REQUEST_ID_HEADERS: ClassVar[tuple[str, ...]] = ("request-id", "x-request-id")
    CACHE_PRICING: ClassVar[CachePricing] = CachePricing(
        0.1, 1.25, 2.0, "Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x, one-hour writes 2x")
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "seed": "Messages has no seed",
        "frequency_penalty": "not in Messages",
        "presence_penalty": "not in Messages",
        "response_format": "use output_schema, sent as a forced tool",
        "reasoning_effort": 'use extra_body {"thinking": {"type": "enabled", "budget_tokens": N}}',
        "metadata": "Messages metadata holds only user_id: use parameters.user",
        "top_logprobs": "Messages returns no log-probabilities",
        "store": "Messages does not store answers",
        "service_tier": 'Anthropic\'s tiers are auto and standard_only: use extra_body {"service_tier": ...}',
    }

    def _check(self) -> None:
        super()._check()
        temperature = self._params.get("temperature")
        if isinstance(temperature, (int, float)) and temperature > 1:
            raise ConfigError(f"parameters.temperature: the anthropic_messages API accepts 0 to 1 (got {temperature})")
        if self._schema is not None and self._template_keys & {"tools", "tool_choice"}:
            raise ConfigError("output_schema: on anthropic_messages it is sent as a forced tool, so it cannot be "
                              "combined with the request template's own tools or tool_choice")

    @property
    def endpoint_url(self) -> str:
        return self.url("/messages")

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        if isinstance(body.get("messages"), list):
            system, rest = split_system(body["messages"])
            body["messages"] = [_message(m) for m in rest]
            if system is not None:
                body["system"] = f"{body['system']}\n\n{system}" if isinstance(body.get("system"), str) else system
        limit = body.pop("max_completion_tokens", None)
        body["max_tokens"] = body.get("max_tokens") or limit or DEFAULT_MAX_TOKENS
        stop = body.pop("stop", None)
        if stop is not None:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        user = body.pop("user", None)
        if user is not None:
            body["metadata"] = {**(body.get("metadata") or {}), "user_id": user}
        tools = chat_tools(body.get("tools"))
        if tools:
            body["tools"] = [{"name": n, **({"description": d} if d else {}), "input_schema": p or {"type": "object"}}
                             for n, d, p in tools]
        choice = body.get("tool_choice")
        if isinstance(choice, str):
            body["tool_choice"] = dict(_TOOL_CHOICE.get(choice, {"type": choice}))
        elif isinstance(choice, dict) and choice.get("type") == "function" and named_tool_choice(choice):
            body["tool_choice"] = {"type": "tool", "name": named_tool_choice(choice)}
        if self._schema is not None:
            body["tools"] = [{"name": SCHEMA_NAME, "description": "Record the answer in this exact structure.",
                              "input_schema": self._schema}]
            body["tool_choice"] = {"type": "tool", "name": SCHEMA_NAME}
        if self.config.prompt_cache:
            cacheable(body)
        return body

    def stream_fields(self) -> dict[str, Any]:
        return {}

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key is not None else ""
        return {"x-api-key": key} if key else {}

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        headers = dict(JSON_HEADERS) if payload is not None else {"Accept": "application/json"}
        headers["anthropic-version"] = ANTHROPIC_VERSION
        headers.update(self.auth_headers())
        headers.update(self.extra_headers)
        return headers

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out.pop("stream", None)
        out["max_tokens"] = 1
        return out

    def parse_reply(self, raw: bytes) -> Reply:
        message = load_object(raw)
        if message.get("type") == "error" or ("content" not in message and "error" in message):
            raise BadReply(f"the endpoint returned an error with status 200: {generic_error_message(message)}")
        if not isinstance(message.get("content"), list):
            raise BadReply(f"the reply has no 'content' list: {preview(raw)}")
        return normalise(message, structured=self._schema is not None)

    def reported_usage(self, raw: bytes) -> TokenUsage:
        usage = load_object(raw).get("usage")
        return usage_from(chat_reply(None, None, **usage_counts(usage if isinstance(usage, dict) else {})))

    def stream_assembler(self) -> AnthropicStream:
        return AnthropicStream(structured=self._schema is not None)


def cacheable(body: dict[str, Any]) -> None:
    """Mark the end of what every row's request shares as a cache breakpoint: Anthropic caches the prefix
    up to it (tools, then system) and bills reads at 0.1x input. The system text becomes a text block
    carrying ``cache_control``; without a system text, the last tool carries it."""
    mark = {"type": "ephemeral"}
    system = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = [{"type": "text", "text": system, "cache_control": mark}]
    elif isinstance(system, list) and system and isinstance(system[-1], dict):
        body["system"] = [*system[:-1], {**system[-1], "cache_control": mark}]
    elif isinstance(body.get("tools"), list) and body["tools"] and isinstance(body["tools"][-1], dict):
        body["tools"] = [*body["tools"][:-1], {**body["tools"][-1], "cache_control": mark}]


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    blocks = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        elif isinstance(part, dict) and part.get("type") == "file" and isinstance(part.get("file"), dict):
            blocks.append({"type": "document", "source": _document_source(part["file"])})
        else:
            blocks.append(part)
    return {**message, "content": blocks}


def _document_source(file: Mapping[str, Any]) -> dict[str, Any]:
    """A chat file part's file as a document block's source: base64 of a data URL, or a URL."""
    data = str(file.get("file_data") or "")
    if data.startswith("data:") and ";base64," in data:
        media, payload = data[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": media, "data": payload}
    return {"type": "url", "url": file.get("file_url") or data}


def normalise(message: Mapping[str, Any], *, structured: bool = False) -> Reply:
    """A Messages reply as a chat completion. With an output schema, the forced tool's input is the answer."""
    texts: list[str] = []
    thinking: list[str] = []
    calls = []
    answer: str | None = None
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            if structured and block.get("name") == SCHEMA_NAME:
                answer = orjson.dumps(block.get("input", {})).decode()
            else:
                calls.append(tool_call(block.get("id"), str(block.get("name", "")), block.get("input", {})))
    stop = message.get("stop_reason")
    finish = _FINISH.get(str(stop), "other") if stop is not None else None
    if answer is not None and finish == "tool_calls" and not calls:
        finish = "stop"  # the forced output tool is the answer, not a call to act on
    meta = {k: message[k] for k in ("id", "model") if k in message}
    # Without a forced tool call (a server that ignores tool_choice), the text is the answer.
    content = answer if answer is not None else "".join(texts)
    return chat_reply(content, finish, tool_calls=calls, reasoning="".join(thinking) or None, meta=meta,
                      **usage_counts(message.get("usage") or {}))


def usage_counts(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Messages ``usage`` as the normalised counts. ``input_tokens`` excludes the cache reads and
    writes, which Anthropic reports apart (and bills at 0.1x and 1.25x, or 2x for a one-hour write):
    the prompt is their sum. ``output_tokens`` already includes thinking (``output_tokens_details``)."""
    parts = [usage.get(k) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")]
    prompt = sum(p for p in parts if isinstance(p, int)) if any(isinstance(p, int) for p in parts) else None
    creation = usage.get("cache_creation")
    details = usage.get("output_tokens_details")
    return {"prompt_tokens": prompt, "completion_tokens": usage.get("output_tokens"),
            "cached_tokens": parts[1], "cache_write_tokens": parts[2],
            "cache_write_1h_tokens": creation.get("ephemeral_1h_input_tokens") if isinstance(creation, dict) else None,
            "reasoning_tokens": details.get("thinking_tokens") if isinstance(details, dict) else None}


class AnthropicStream:
    """Assembles the Messages event stream into the message it describes, then normalises it."""

    def __init__(self, structured: bool = False) -> None:
        self.got_first_token = False
        self._structured = structured
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._usage: dict[str, Any] = {}
        self._output_counted = False  # a message_delta said the output tokens (message_start's are a placeholder)
        self.finished = False

    def feed(self, data: str) -> None:
        if self.finished:
            return  # events after message_stop are not part of the answer
        event = load_object(data, "a stream event is")
        kind = event.get("type")
        if kind == "message_start":
            self._message = dict(event.get("message") or {})
            self._usage.update(self._message.get("usage") or {})
        elif kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            if block.get("type") == "tool_use":
                block["input"] = {}
            self._blocks[int(event.get("index", len(self._blocks)))] = block
        elif kind == "content_block_delta":
            self._delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if "stop_reason" in delta:
                self._message["stop_reason"] = delta["stop_reason"]
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            self._output_counted = self._output_counted or "output_tokens" in (event.get("usage") or {})
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error" or (kind is None and "error" in event):
            raise BadReply(f"the endpoint reported an error mid-stream: {generic_error_message(event)}")

    def _delta(self, index: int, delta: Mapping[str, Any]) -> None:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + str(delta.get("text", ""))
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(str(delta.get("partial_json", "")))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
        else:
            return
        self.got_first_token = True

    def received(self) -> tuple[TokenUsage, int]:
        """The input tokens message_start reported, the output tokens once a message_delta said them, and
        the characters of text, thinking and tool input received."""
        counts = usage_counts(self._usage)
        output = self._output_counted
        usage = TokenUsage(token_count(counts["prompt_tokens"]),
                           token_count(counts["completion_tokens"]) if output else None,
                           token_count(counts["cached_tokens"]), token_count(counts["cache_write_tokens"]),
                           token_count(counts["cache_write_1h_tokens"]),
                           token_count(counts["reasoning_tokens"]) if output else None)
        chars = sum(len(str(b.get("text", ""))) + len(str(b.get("thinking", ""))) for b in self._blocks.values())
        return usage, chars + sum(len(p) for pieces in self._json.values() for p in pieces)

    def result(self) -> Reply:
        if not self.finished and self._message.get("stop_reason") is None:
            raise BadReply("the stream ended before message_stop and before a stop_reason: answer incomplete")
        for index, pieces in self._json.items():
            text = "".join(pieces)
            try:
                self._blocks[index]["input"] = orjson.loads(text) if text.strip() else {}
            except orjson.JSONDecodeError:
                raise BadReply(f"a tool_use block's streamed input is not JSON: {preview(text)}") from None
        message = {**self._message, "content": [self._blocks[i] for i in sorted(self._blocks)], "usage": self._usage}
        return normalise(message, structured=self._structured)
