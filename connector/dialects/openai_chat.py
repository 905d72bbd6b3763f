"""The OpenAI chat-completions API shape (``POST .../chat/completions``), the first dialect.

Its replies are already in the normalised shape; the other dialects translate to
it. :class:`ChatDialect` also serves as the base of the shapes that speak chat
completions at another address or with another key header (Azure, Bedrock).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property, lru_cache
from typing import Any, ClassVar

from connector.config.output_schema import SCHEMA_NAME, strict_compatible
from connector.dialects.base import (
    JSON_HEADERS,
    DialectBase,
    Prepared,
    Reply,
    generic_error_message,
    load_object,
    loads,
    preview,
)
from connector.dialects.base import StreamAssembler as Assembler
from connector.dialects.replies import content_text, normalise
from connector.dialects.structured import MODES, SAID, instruction, is_json, on_wire, refuses
from connector.dialects.usage import TokenUsage, usage_from
from connector.errors import BadReply

__all__ = ["ChatDialect", "Reply", "StreamAssembler", "error_message", "parse_reply"]

# OpenAI's reasoning models refuse max_tokens (400 "Use 'max_completion_tokens' instead"): o1, o3, o4-mini,
# gpt-5 and their dated snapshots, also behind a provider prefix (openai/o3-mini).
REASONING_MODELS = re.compile(r"(^|/)(o\d|gpt-5)([-.]|$)")


@lru_cache(maxsize=256)
def _reasoning_model(model: str) -> bool:
    """A model in :data:`REASONING_MODELS` (asked once per model name, not once per row)."""
    return REASONING_MODELS.search(model) is not None


_CAP_FIELDS = ("max_tokens", "max_completion_tokens")  # a chat-shaped body's output-token cap


class ChatDialect(DialectBase):
    """``POST {base}/chat/completions`` with ``Authorization: Bearer``."""

    name: ClassVar[str] = "openai_chat_completions"
    # The body is a chat-completions body (max_tokens and all): false in the shapes built on this class.
    CHAT_BODY: ClassVar[bool] = True

    @property
    def endpoint_url(self) -> str:
        return self.url("/chat/completions")

    def without_output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in _CAP_FIELDS}

    def output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: body[k] for k in _CAP_FIELDS if k in body}

    @property
    def models_url(self) -> str | None:
        return self.url("/models")

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        if "top_logprobs" in body:
            body.setdefault("logprobs", True)
        if self._schema is not None:
            body["response_format"] = dict(self._schema_format)
        if "max_tokens" in body and _reasoning_model(str(body.get("model") or "")):
            body["max_completion_tokens"] = body.pop("max_tokens")
        return body

    @cached_property
    def _schema_format(self) -> dict[str, Any]:
        """``response_format`` for the configured output schema, built once: the strict check walks the
        whole schema, which is the same for every row (each body gets its own copy of the outer dict)."""
        assert self._schema is not None
        return chat_schema_format(self._schema)

    def adapt(self, status: int, message: str) -> str | None:
        """What to change after an error the request itself caused, so that resending it can succeed; None
        when nothing would. OpenAI's reasoning models answer 400 "Unsupported parameter: 'max_tokens' ...
        Use 'max_completion_tokens' instead": from then on max_tokens goes as max_completion_tokens. An
        endpoint that refuses json_schema gets the next structured-output mode
        (:mod:`connector.dialects.structured`)."""
        if not self.CHAT_BODY:
            return None
        if status == 400 and "max_completion_tokens" in message and not self._completion_tokens_name:
            self._completion_tokens_name = True
            return "the endpoint refused max_tokens and asked for max_completion_tokens: sent so from now on"
        if self._schema is not None and self.structured_mode != "prompt" and refuses(status, message):
            refused = self.structured_mode
            self.structured_mode = MODES[MODES.index(refused) + 1]
            return (f"the endpoint refused {SAID[refused]} ({status}): output_schema is asked for "
                    f"with {SAID[self.structured_mode]} from now on, the answers validated as before")
        return None

    def answered_free_text(self, content: object) -> str | None:
        """An endpoint that accepted json_schema but answered free text ignores it: from now on JSON mode
        with the schema in the prompt (:mod:`connector.dialects.structured`)."""
        if not self.CHAT_BODY or self._schema is None or self.structured_mode != "json_schema" \
                or not isinstance(content, str) or is_json(content):
            return None
        self.structured_mode = "json_object"
        return (f"the endpoint answered free text to {SAID['json_schema']}: output_schema is asked for with "
                f"{SAID['json_object']} from now on, the answers validated as before")

    def stream_fields(self) -> dict[str, Any]:
        return {"stream_options": {"include_usage": True}}

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        return Prepared(self.endpoint_url, self.wire(body), bool(body.get("stream")))

    def wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body as sent: max_tokens under its other name once the endpoint asked for it (on the wire
        only, so cache keys stay as they were)."""
        wire = dict(body)
        if self._completion_tokens_name and "max_tokens" in wire:
            wire["max_completion_tokens"] = wire.pop("max_tokens")
        if self._schema is not None and self.structured_mode != "json_schema":
            wire = on_wire(wire, self.structured_mode, self._schema_instruction)
        return wire

    @cached_property
    def _schema_instruction(self) -> str:
        """The output schema as the prompt states it (:func:`connector.dialects.structured.instruction`), once."""
        assert self._schema is not None
        return instruction(self._schema)

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key is not None else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        return dict(self._body_headers if payload is not None else self._get_headers)  # a copy: callers add

    # The headers are the same for every request of a run (the key and the configured headers: a shape
    # whose auth changes while running, such as Vertex's token or Bedrock's signature, has its own headers()).
    @cached_property
    def _body_headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, **self.auth_headers(), **self.extra_headers}

    @cached_property
    def _get_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **self.auth_headers(), **self.extra_headers}

    def parse_reply(self, raw: bytes) -> Reply:
        return parse_reply(raw)

    def reported_usage(self, raw: bytes) -> TokenUsage:
        return usage_from(load_object(raw))

    def normalise(self, reply: Reply) -> Reply:
        return normalise(reply)

    def stream_assembler(self) -> Assembler:
        return StreamAssembler()


def chat_schema_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``response_format`` for an output schema; strict where OpenAI's strict mode accepts the schema."""
    spec: dict[str, Any] = {"name": SCHEMA_NAME, "schema": dict(schema)}
    if strict_compatible(schema):
        spec["strict"] = True
    return {"type": "json_schema", "json_schema": spec}


def parse_reply(raw: bytes) -> Reply:
    """A non-streamed reply body, checked enough that later code can trust its shape."""
    reply = load_object(raw)
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if isinstance(reply.get("error"), (dict, str)):
            raise BadReply(f"the endpoint returned an error with status 200: {error_message(reply)}")
        raise BadReply(f"the reply has no 'choices': {preview(raw)}")
    return reply


def error_message(body: Any) -> str:
    """The human part of an error body, whichever of the common shapes it has."""
    return generic_error_message(body)


class StreamAssembler:
    """Builds one normalised reply from the ``data:`` payloads of a chat-completions stream."""

    def __init__(self) -> None:
        self.finished = False
        self.got_first_token = False
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self._role = "assistant"
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._meta: dict[str, Any] = {}

    def feed(self, data: str) -> None:
        """One event's data. Sets ``got_first_token`` when the first text arrives."""
        if self.finished:
            return  # data after [DONE] is not part of the answer
        if data.strip() == "[DONE]":
            self.finished = True
            return
        try:
            chunk = loads(data)
        except ValueError:
            raise BadReply(f"a stream event is not JSON: {preview(data)}") from None
        if not isinstance(chunk, dict):
            raise BadReply(f"a stream event is not a JSON object: {preview(data)}")
        if "error" in chunk:
            raise BadReply(f"the endpoint reported an error mid-stream: {error_message(chunk)}")
        for key in ("id", "model", "created", "system_fingerprint"):
            if key in chunk and key not in self._meta:
                self._meta[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices: Any = chunk.get("choices") or []
        for choice in choices if isinstance(choices, list) else [choices]:
            delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise BadReply(f"a stream event's choice or delta is not an object: {preview(data)}",
                               retryable=False)
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not assembled; the first choice is the answer
            if isinstance(delta.get("role"), str):
                self._role = delta["role"]
            content = content_text(delta.get("content"), "stream delta content")
            if content:
                self._content.append(content)
                self.got_first_token = True
            if delta.get("reasoning_content"):
                self._reasoning.append(delta["reasoning_content"])
                self.got_first_token = True
            for call in delta.get("tool_calls") or ():
                self._merge_tool_call(call)
                self.got_first_token = True
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]

    def _merge_tool_call(self, call: Mapping[str, Any]) -> None:
        slot = self._tool_calls.setdefault(
            int(call.get("index", 0)), {"type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        fn = call.get("function") or {}
        slot["function"]["name"] += fn.get("name") or ""
        slot["function"]["arguments"] += fn.get("arguments") or ""

    def received(self) -> tuple[TokenUsage, int]:
        """The usage chunk's counts, if one came, and the characters of text, reasoning and tool calls."""
        calls = sum(len(c["function"]["name"]) + len(c["function"]["arguments"]) for c in self._tool_calls.values())
        chars = sum(map(len, self._content)) + sum(map(len, self._reasoning)) + calls
        return usage_from({"usage": self._usage}), chars

    def result(self) -> Reply:
        """The assembled reply; raises when the stream ended before it was complete."""
        if not self.finished and self._finish_reason is None:
            raise BadReply("the stream ended before [DONE] and before any finish_reason: answer incomplete")
        message: dict[str, Any] = {"role": self._role, "content": "".join(self._content)}
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._tool_calls:
            message["tool_calls"] = [self._tool_calls[i] for i in sorted(self._tool_calls)]
        reply: Reply = {
            **self._meta,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason}],
        }
        if self._usage is not None:
            reply["usage"] = self._usage
        return reply
