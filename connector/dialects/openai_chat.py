"""The OpenAI chat-completions API shape (``POST .../chat/completions``).

A dialect knows three things and nothing about HTTP: how to finish a request
body, how to read a reply body, and how to assemble a streamed reply from its
SSE events. Whatever the mode, the result is a normalised reply with the shape
of a non-streamed chat completion, so response templates and output columns are
the same for streamed and plain calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from connector.config import SourceConfig
from connector.errors import BadReply

Reply = dict[str, Any]


class RequestBuilder:
    """Finishes the templated body: model, parameters, streaming, extra fields.

    Precedence, lowest first: the request template, then ``model`` (only where
    the template sets none), then ``parameters``, then streaming options, then
    ``extra_body``, which is merged last and so can override anything.
    """

    def __init__(self, config: SourceConfig) -> None:
        self._model = config.model
        overrides: dict[str, Any] = dict(config.parameters.as_body())
        if config.stream:
            overrides["stream"] = True
            overrides["stream_options"] = {"include_usage": True}
        overrides.update(config.extra_body)
        self._overrides = overrides

    def build(self, templated: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(templated)
        if self._model is not None and "model" not in body:
            body["model"] = self._model
        body.update(self._overrides)
        return body


def parse_reply(raw: bytes) -> Reply:
    """A non-streamed reply body, checked enough that later code can trust its shape."""
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadReply(f"the endpoint returned a body that is not JSON: {_preview(raw)}") from None
    if not isinstance(reply, dict):
        raise BadReply(f"the endpoint returned JSON that is not an object: {_preview(raw)}")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if isinstance(reply.get("error"), (dict, str)):
            raise BadReply(f"the endpoint returned an error with status 200: {error_message(reply)}")
        raise BadReply(f"the reply has no 'choices': {_preview(raw)}")
    return reply


def error_message(body: Any) -> str:
    """The human part of an error body, whichever of the common shapes it has."""
    if isinstance(body, (bytes, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _preview(body)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or err.get("msg")
            code = err.get("code") or err.get("type")
            if message:
                return f"{message} ({code})" if code and str(code) not in str(message) else str(message)
        elif isinstance(err, str):
            return err
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return _preview(orjson.dumps(body))


def _preview(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class StreamAssembler:
    """Builds one normalised reply from the ``data:`` payloads of a chat-completions stream."""

    def __init__(self) -> None:
        self.done = False
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
        if data.strip() == "[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BadReply(f"a stream event is not JSON: {_preview(data)}") from None
        if not isinstance(chunk, dict):
            raise BadReply(f"a stream event is not a JSON object: {_preview(data)}")
        if "error" in chunk:
            raise BadReply(f"the endpoint reported an error mid-stream: {error_message(chunk)}")
        for key in ("id", "model", "created", "system_fingerprint"):
            if key in chunk and key not in self._meta:
                self._meta[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not assembled; the first choice is the answer
            delta = choice.get("delta") or {}
            if delta.get("role"):
                self._role = delta["role"]
            if delta.get("content"):
                self._content.append(delta["content"])
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

    def result(self) -> Reply:
        """The assembled reply; raises when the stream ended before it was complete."""
        if not self.done and self._finish_reason is None:
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
