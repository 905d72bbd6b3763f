"""The OpenAI Responses API shape (``POST {base}/responses``).

Request: chat ``messages`` become ``input`` items (text parts become
``input_text``), ``max_tokens`` becomes ``max_output_tokens``, ``response_format``
and the output schema become ``text.format``, ``reasoning_effort`` becomes
``reasoning.effort``, function tools are flattened, and ``store`` is false unless
set. Reply: ``output`` items (``message`` / ``function_call`` / ``reasoning``),
``status`` and ``incomplete_details`` give the finish reason, ``usage`` has
``input_tokens`` / ``output_tokens``. A stream is a series of typed events
ending with ``response.completed`` (or ``response.incomplete`` /
``response.failed``), which carries the whole response: there is no ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

import orjson

from connector.config.output_schema import SCHEMA_NAME, strict_compatible
from connector.dialects.base import (
    Prepared,
    Reply,
    chat_reply,
    chat_tools,
    generic_error_message,
    load_object,
    named_tool_choice,
    preview,
    tool_call,
)
from connector.dialects.openai_chat import ChatDialect
from connector.dialects.usage import TokenUsage, detail, usage_from
from connector.errors import BadReply


class ResponsesDialect(ChatDialect):
    """``POST {base}/responses`` with ``Authorization: Bearer``."""

    name: ClassVar[str] = "openai_responses"
    CHAT_BODY: ClassVar[bool] = False
    conversation_key: ClassVar[str] = "input"
    system_key: ClassVar[str | None] = "instructions"
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "stop": "Responses has no stop sequences",
        "seed": "Responses has no seed",
        "frequency_penalty": "not in Responses",
        "presence_penalty": "not in Responses",
    }

    @property
    def endpoint_url(self) -> str:
        return self.url("/responses")

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        if "messages" in body and "input" not in body:
            messages = body.pop("messages")
            body["input"] = messages if isinstance(messages, str) else [_input_item(m) for m in messages]
        limit = body.pop("max_completion_tokens", None)
        limit = body.pop("max_tokens", None) or limit
        if limit is not None:
            body["max_output_tokens"] = limit
        fmt = body.pop("response_format", None)
        if self._schema is not None:
            body["text"] = {**(body.get("text") or {}), "format": dict(self._schema_text_format)}
        elif isinstance(fmt, dict):
            body["text"] = {**(body.get("text") or {}), "format": _text_format(fmt, None)}
        effort = body.pop("reasoning_effort", None)
        if effort is not None:
            body["reasoning"] = {**(body.get("reasoning") or {}), "effort": effort}
        tools = chat_tools(body.get("tools"))
        if tools:
            body["tools"] = [{"type": "function", "name": n, "description": d, "parameters": p} for n, d, p in tools]
        name = named_tool_choice(body.get("tool_choice"))
        if name is not None:
            body["tool_choice"] = {"type": "function", "name": name}
        if "top_logprobs" in body:
            body.setdefault("include", ["message.output_text.logprobs"])
        body.setdefault("store", False)  # the connector never needs the provider to keep answers
        return body

    @cached_property
    def _schema_text_format(self) -> dict[str, Any]:
        """``text.format`` for the configured output schema, built once: the strict check walks the whole
        schema, which is the same for every row."""
        return _text_format({"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": self._schema}},
                            self._schema)

    def stream_fields(self) -> dict[str, Any]:
        return {}

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        prepared = super().prepare(body)
        # Said out loud on the wire only (cache keys stay as they were): `transformers serve`
        # streams /v1/responses when "stream" is omitted, as OpenAI's default is false.
        prepared.body.setdefault("stream", False)
        return prepared

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out.pop("stream", None)
        out["max_output_tokens"] = 16  # OpenAI's minimum
        return out

    def max_output_tokens(self, body: Mapping[str, Any]) -> int | None:
        value = body.get("max_output_tokens")
        return value if isinstance(value, int) else None

    def without_output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "max_output_tokens"}

    def output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"max_output_tokens": body["max_output_tokens"]} if "max_output_tokens" in body else {}

    def with_feedback(self, body: Mapping[str, Any], answer: str, ask: str) -> dict[str, Any] | None:
        before = body.get("input")
        if isinstance(before, str):
            before = [{"role": "user", "content": before}]
        if not isinstance(before, list):
            return None
        return {**body, "input": [*before, *self.feedback_turns(answer, ask)]}

    def feedback_turns(self, answer: str, ask: str) -> list[dict[str, Any]]:
        # An output message item, typed: OpenAI takes "type" as optional, llama.cpp requires it (and
        # output_text parts) on an assistant turn and rejects the request otherwise.
        replayed = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": answer}]}
        return [replayed, {"role": "user", "content": ask}]

    def parse_reply(self, raw: bytes) -> Reply:
        return normalise(load_object(raw))

    def reported_usage(self, raw: bytes) -> TokenUsage:
        usage = load_object(raw).get("usage")
        return usage_from(chat_reply(None, None, **usage_counts(usage if isinstance(usage, dict) else {})))

    def stream_assembler(self) -> ResponsesStream:
        return ResponsesStream()


def _input_item(message: Any) -> Any:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    parts = []
    for part in message["content"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "output_text" if message.get("role") == "assistant" else "input_text",
                          "text": part.get("text", "")})
        elif kind == "image_url":
            url = part.get("image_url")
            parts.append({"type": "input_image", "image_url": url.get("url") if isinstance(url, dict) else url})
        elif kind == "file" and isinstance(part.get("file"), dict):  # a chat file part: input_file
            parts.append({"type": "input_file", **part["file"]})  # filename + file_data, or file_url
        else:
            parts.append(part)
    return {**message, "content": parts}


def _text_format(fmt: Mapping[str, Any], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    if fmt.get("type") != "json_schema":
        return dict(fmt)
    spec = fmt.get("json_schema") or {}
    out: dict[str, Any] = {"type": "json_schema", "name": spec.get("name", SCHEMA_NAME), "schema": spec.get("schema")}
    if "strict" in spec:
        out["strict"] = spec["strict"]
    elif schema is not None and strict_compatible(schema):
        out["strict"] = True
    if spec.get("description"):
        out["description"] = spec["description"]
    return out


_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def normalise(response: Mapping[str, Any]) -> Reply:
    """A Responses ``response`` object as a chat completion."""
    status = response.get("status")
    if status == "failed" or (response.get("error") and status not in ("completed", "incomplete")):
        raise BadReply(f"the response failed: {generic_error_message({'error': response.get('error')})}")
    if not isinstance(response.get("output"), list):
        if isinstance(response.get("error"), (dict, str)):
            raise BadReply(f"the endpoint returned an error with status 200: {generic_error_message(response)}")
        raise BadReply(f"the reply has no 'output': {preview(orjson.dumps(response))}")
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls = []
    for item in response["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(str(part.get("text", "")))
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal", "")))
        elif kind == "function_call":
            calls.append(tool_call(item.get("call_id") or item.get("id"), str(item.get("name", "")),
                                   item.get("arguments", "")))
        elif kind == "reasoning":
            for summary in item.get("summary") or ():
                reasoning.append(str(summary.get("text", "")))
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        finish = _INCOMPLETE.get(str(reason), "other")
    elif refusals and not texts:
        finish = "content_filter"
    elif calls:
        finish = "tool_calls"
    else:
        finish = "stop"
    meta = {k: response[k] for k in ("id", "model") if k in response}
    if "created_at" in response:
        meta["created"] = response["created_at"]
    content = "".join(texts) if texts or not refusals else "".join(refusals)
    return chat_reply(content, finish, tool_calls=calls, reasoning="".join(reasoning) or None, meta=meta,
                      **usage_counts(response.get("usage") or {}))


def usage_counts(usage: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses ``usage`` as the normalised counts: input_tokens includes the cached ones and
    output_tokens the reasoning, as in chat completions."""
    return {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "cached_tokens": detail(usage, "input_tokens_details", "cached_tokens"),
            "reasoning_tokens": detail(usage, "output_tokens_details", "reasoning_tokens")}


class ResponsesStream:
    """Assembles a Responses stream: deltas for time to first token, the final event for the answer."""

    def __init__(self) -> None:
        self.got_first_token = False
        self._final: Mapping[str, Any] | None = None
        self._text: list[str] = []
        self._chars = 0  # of every delta: text, refusal, tool arguments, reasoning summary
        self.finished = False

    def feed(self, data: str) -> None:
        if self.finished:
            return  # events after the final one are not part of the answer
        if data.strip() == "[DONE]":
            return  # not in the spec, but some gateways add it
        event = load_object(data, "a stream event is")
        kind = event.get("type")
        if kind in ("response.output_text.delta", "response.refusal.delta",
                    "response.function_call_arguments.delta", "response.reasoning_summary_text.delta"):
            delta = str(event.get("delta", ""))
            if kind == "response.output_text.delta":
                self._text.append(delta)
            self._chars += len(delta)
            self.got_first_token = True
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response")
            if not isinstance(response, dict):
                raise BadReply(f"a {kind} event without its response: {preview(data)}")
            self._final, self.finished = response, True
        elif kind == "error" or (kind is None and "error" in event):
            raise BadReply(f"the endpoint reported an error mid-stream: {generic_error_message(event)}")

    def received(self) -> tuple[TokenUsage, int]:
        """No usage before the final event (which carries it: the stream was complete), and the characters
        of every delta."""
        return TokenUsage(), self._chars

    def result(self) -> Reply:
        if self._final is None:
            raise BadReply("the stream ended before response.completed: answer incomplete")
        final = dict(self._final)
        if not final.get("output") and self._text:
            # Servers that leave the final output empty: the deltas are the answer.
            final["output"] = [{"type": "message", "content": [{"type": "output_text", "text": "".join(self._text)}]}]
        return normalise(final)
