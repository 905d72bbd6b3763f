"""Google's generateContent API shape (Gemini API; Vertex AI builds on it in :mod:`vertex`).

URL: ``{base}/models/{model}:generateContent``, or
``:streamGenerateContent?alt=sse`` for a stream; the model lives in the URL, not
the body. Key: ``x-goog-api-key``. Request: chat ``messages`` become ``contents``
(roles ``user`` / ``model``, ``parts``), system messages ``systemInstruction``;
sampling parameters go in ``generationConfig`` (``maxOutputTokens``, ``topP``,
``stopSequences``, ...); the output schema becomes ``responseMimeType`` +
``responseSchema`` (Google's OpenAPI subset: upper-case types, ``nullable``);
function tools become ``functionDeclarations``. Reply: ``candidates[0].content.parts``
(``text``, ``functionCall``, ``thought``), ``finishReason`` (STOP, MAX_TOKENS,
SAFETY, ...), ``usageMetadata``. A stream is a series of partial replies with
no end marker; the last carries ``finishReason`` and the usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

import orjson

from connector.config.parts import RequestPart
from connector.dialects.base import (
    JSON_HEADERS,
    Prepared,
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

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
           "IMAGE_SAFETY": "content_filter"}
# As Google's own OpenAI-compatible layer maps reasoning_effort (1K, 8K and 24K thinking tokens).
THINKING_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_RENAME = {"temperature": "temperature", "top_p": "topP", "seed": "seed", "frequency_penalty": "frequencyPenalty",
           "presence_penalty": "presencePenalty"}
_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_SCHEMA_KEEP = ("description", "enum", "format", "nullable", "minItems", "maxItems", "minimum", "maximum",
                "required", "title", "minLength", "maxLength", "pattern", "minProperties", "maxProperties")


class GeminiDialect(ChatDialect):
    """``POST {base}/models/{model}:generateContent`` with ``x-goog-api-key``."""

    name: ClassVar[str] = "gemini_generate_content"
    CHAT_BODY: ClassVar[bool] = False
    CACHE_PRICING: ClassVar[CachePricing] = CachePricing(
        0.1, 1.0, 1.0, "Gemini 2.5 and later: cached input 0.1x input (2.0 models: 0.25x; set "
        "cached_input_per_million), no write premium (explicit caches' storage per hour is not counted)")
    conversation_key: ClassVar[str] = "contents"
    system_key: ClassVar[str | None] = "systemInstruction"
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "user": "generateContent has no end-user field",
        "metadata": "generateContent has no request metadata",
        "store": "generateContent does not store answers",
        "service_tier": "generateContent has no service tier (batch.enabled gives the batch price)",
    }

    def _check(self) -> None:
        super()._check()
        if self._model is None and "model" not in self._template_keys:
            raise ConfigError(f"model: the {self.name} API puts the model in the URL; set model")

    @property
    def base_url(self) -> str:
        return self.address.base.split("/models/", 1)[0]

    @property
    def endpoint_url(self) -> str:
        return self.prepare({"model": self.model or ""}).url

    @property
    def models_url(self) -> str | None:
        return self.url("/models")

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        if isinstance(body.get("messages"), list) and "contents" not in body:
            system, rest = split_system(body.pop("messages"))
            body["contents"] = [_content(m) for m in rest]
            if system is not None:
                body["systemInstruction"] = {"parts": [{"text": system}]}
        gen: dict[str, Any] = dict(body.get("generationConfig") or {})
        for chat, name in _RENAME.items():
            if chat in body:
                gen[name] = body.pop(chat)
        limits = [body.pop(k, None) for k in ("max_tokens", "max_completion_tokens")]
        if any(limits):
            gen["maxOutputTokens"] = next(v for v in limits if v)
        stop = body.pop("stop", None)
        if stop is not None:
            gen["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        if "top_logprobs" in body:
            gen["responseLogprobs"] = True
            gen["logprobs"] = body.pop("top_logprobs")
        effort = body.pop("reasoning_effort", None)
        if effort is not None:
            gen["thinkingConfig"] = {**(gen.get("thinkingConfig") or {}), "thinkingBudget": THINKING_BUDGET[effort]}
        fmt = body.pop("response_format", None)
        if self._schema is not None:
            gen["responseMimeType"] = "application/json"
            gen["responseSchema"] = dict(self._response_schema)
        elif isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
            gen["responseMimeType"] = "application/json"
            schema = (fmt.get("json_schema") or {}).get("schema")
            if isinstance(schema, dict):
                gen["responseSchema"] = gemini_schema(schema)
        if gen:
            body["generationConfig"] = gen
        tools = chat_tools(body.get("tools"))
        if tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": n, **({"description": d} if d else {}),
                 **({"parameters": gemini_schema(p)} if isinstance(p, dict) else {})} for n, d, p in tools]}]
        choice = body.pop("tool_choice", None)
        if choice is not None:
            fn_name = named_tool_choice(choice)
            config: dict[str, Any] = {"mode": "ANY" if fn_name else _MODE.get(str(choice), "AUTO")}
            if fn_name:
                config["allowedFunctionNames"] = [fn_name]
            body["toolConfig"] = {"functionCallingConfig": config}
        return body

    @cached_property
    def _response_schema(self) -> dict[str, Any]:
        """The configured output schema in Gemini's form, converted once (it is the same for every row)."""
        assert self._schema is not None
        return gemini_schema(self._schema)

    def stream_fields(self) -> dict[str, Any]:
        return {}

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(body)
        out.pop("stream", None)
        out["generationConfig"] = {**(out.get("generationConfig") or {}), "maxOutputTokens": 1}
        return out

    def max_output_tokens(self, body: Mapping[str, Any]) -> int | None:
        value = (body.get("generationConfig") or {}).get("maxOutputTokens")
        return value if isinstance(value, int) else None

    def without_output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        config = body.get("generationConfig")
        if not isinstance(config, dict) or "maxOutputTokens" not in config:
            return dict(body)
        return {**body, "generationConfig": {k: v for k, v in config.items() if k != "maxOutputTokens"}}

    def output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        config = body.get("generationConfig")
        return {"generationConfig": config} if isinstance(config, dict) and "maxOutputTokens" in config else {}

    def feedback_turns(self, answer: str, ask: str) -> list[dict[str, Any]]:
        return [{"role": "model", "parts": [{"text": answer}]}, {"role": "user", "parts": [{"text": ask}]}]

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        wire = dict(body)
        stream = bool(wire.pop("stream", False))
        model = str(wire.pop("model", None) or self.model or "").removeprefix("models/")
        method = "streamGenerateContent" if stream else "generateContent"
        return Prepared(self.url(f"/models/{model}:{method}", {"alt": "sse"} if stream else None), wire, stream)

    def auth_headers(self) -> dict[str, str]:
        return key_header(self.config)

    async def headers(self, method: str, url: str, payload: bytes | None) -> dict[str, str]:
        headers = dict(JSON_HEADERS) if payload is not None else {"Accept": "application/json"}
        headers.update(self.auth_headers())
        headers.update(self.extra_headers)
        return headers

    def parse_reply(self, raw: bytes) -> Reply:
        return normalise(load_object(raw))

    def reported_usage(self, raw: bytes) -> TokenUsage:
        usage = load_object(raw).get("usageMetadata")
        return usage_from(chat_reply(None, None, **usage_counts(usage if isinstance(usage, dict) else {})))

    def stream_assembler(self) -> GeminiStream:
        return GeminiStream()

    def parse_models(self, raw: bytes) -> list[str]:
        data = orjson.loads(raw)
        entries = data.get("models") if isinstance(data, dict) else None
        names = [e.get("name") or e.get("id") for e in entries or () if isinstance(e, dict)]
        return [str(n).removeprefix("models/") for n in names if n]

    def error_message(self, body: bytes | str) -> str:
        return generic_error_message(body)


def key_header(config: RequestPart) -> dict[str, str]:
    """The Gemini API's key header (``x-goog-api-key``), empty without a key."""
    key = config.api_key.get_secret_value() if config.api_key is not None else ""
    return {"x-goog-api-key": key} if key else {}


def _content(message: Mapping[str, Any]) -> dict[str, Any]:
    role = "model" if message.get("role") == "assistant" else "user"
    content = message.get("content")
    if isinstance(content, str):
        return {"role": role, "parts": [{"text": content}]}
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"fileUri": url}})
        elif kind == "file" and isinstance(part.get("file"), dict):  # a chat file part (PDF): inline data
            data = str(part["file"].get("file_data") or "")
            mime, _, payload = data[5:].partition(";base64,")
            parts.append({"inlineData": {"mimeType": mime, "data": payload}} if data.startswith("data:")
                         else {"fileData": {"mimeType": "application/pdf", "fileUri": part["file"].get("file_url")}})
        elif isinstance(part, dict):
            parts.append(part)  # already a Gemini part
    if content is None and isinstance(message.get("parts"), list):
        return {"role": role, "parts": message["parts"]}
    return {"role": role, "parts": parts}


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON Schema in the OpenAPI subset ``responseSchema`` and function parameters accept."""
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if "null" in kind:
            out["nullable"] = True
        if len(kinds) == 1:
            kind = kinds[0]
        else:
            out["anyOf"] = [{"type": str(k).upper()} for k in kinds]
            kind = None
    if isinstance(kind, str):
        out["type"] = kind.upper()
    for key in _SCHEMA_KEEP:
        if key in schema:
            out[key] = schema[key]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: gemini_schema(v) for k, v in schema["properties"].items() if isinstance(v, dict)}
        out["propertyOrdering"] = list(out["properties"])
    if isinstance(schema.get("items"), dict):
        out["items"] = gemini_schema(schema["items"])
    if isinstance(schema.get("anyOf"), list):
        out["anyOf"] = [gemini_schema(s) for s in schema["anyOf"] if isinstance(s, dict)]
    return out


def normalise(response: Mapping[str, Any]) -> Reply:
    """A GenerateContentResponse as a chat completion."""
    if "error" in response and "candidates" not in response:
        raise BadReply(f"the endpoint returned an error with status 200: {generic_error_message(response)}")
    candidates = response.get("candidates")
    meta = {"id": response["responseId"]} if "responseId" in response else {}
    if "modelVersion" in response:
        meta["model"] = response["modelVersion"]
    usage = usage_counts(response.get("usageMetadata") or {})
    if not isinstance(candidates, list) or not candidates:
        blocked = (response.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            return chat_reply(None, "content_filter", meta=meta,
                              **{**usage, "completion_tokens": usage["completion_tokens"] or 0})
        raise BadReply(f"the reply has no 'candidates': {preview(orjson.dumps(response))}")
    candidate = candidates[0]
    texts, thoughts, calls = [], [], []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            call = part["functionCall"] or {}
            calls.append(tool_call(call.get("id"), str(call.get("name", "")), call.get("args") or {}))
        elif part.get("thought"):
            thoughts.append(str(part.get("text", "")))
        elif "text" in part:
            texts.append(str(part["text"]))
    reason = candidate.get("finishReason")
    finish = None if reason is None else _FINISH.get(str(reason), "other")
    if finish == "stop" and calls:
        finish = "tool_calls"
    return chat_reply("".join(texts), finish, tool_calls=calls, reasoning="".join(thoughts) or None, meta=meta,
                      **usage)


def usage_counts(usage: Mapping[str, Any]) -> dict[str, Any]:
    """``usageMetadata`` as the normalised counts. ``promptTokenCount`` already includes
    ``cachedContentTokenCount``; ``thoughtsTokenCount`` is apart from ``candidatesTokenCount`` and
    billed as output, so the completion is their sum."""
    output, thoughts = usage.get("candidatesTokenCount"), usage.get("thoughtsTokenCount")
    if isinstance(thoughts, int):
        output = (output if isinstance(output, int) else 0) + thoughts
    return {"prompt_tokens": usage.get("promptTokenCount"), "completion_tokens": output,
            "total_tokens": usage.get("totalTokenCount"), "cached_tokens": usage.get("cachedContentTokenCount"),
            "reasoning_tokens": thoughts}


class GeminiStream:
    """Merges the partial replies of ``streamGenerateContent?alt=sse`` into one."""

    def __init__(self) -> None:
        self.got_first_token = False
        self._parts: list[dict[str, Any]] = []
        self._last: dict[str, Any] = {}
        self._finish: Any = None
        self._blocked = False
        self.finished = False  # a Gemini stream has no end marker: its end is the connection's

    def feed(self, data: str) -> None:
        chunk = load_object(data, "a stream event is")
        if "error" in chunk and "candidates" not in chunk:
            raise BadReply(f"the endpoint reported an error mid-stream: {generic_error_message(chunk)}")
        for key in ("usageMetadata", "modelVersion", "responseId", "promptFeedback"):
            if key in chunk:
                self._last[key] = chunk[key]
        if (chunk.get("promptFeedback") or {}).get("blockReason"):
            self._blocked = True
        if self._finish is not None:
            return  # text after the chunk that carried finishReason is not part of the answer
        for candidate in (chunk.get("candidates") or [])[:1]:  # the first candidate is the answer
            for part in (candidate.get("content") or {}).get("parts") or ():
                self._parts.append(part)
                if part.get("text") or "functionCall" in part:
                    self.got_first_token = True
            if candidate.get("finishReason"):
                self._finish = candidate["finishReason"]

    def received(self) -> tuple[TokenUsage, int]:
        """The counts of the last usageMetadata (each chunk's counts what was generated so far), and the
        characters of the parts received."""
        counts = usage_counts(self._last.get("usageMetadata") or {})
        usage = TokenUsage(token_count(counts["prompt_tokens"]), token_count(counts["completion_tokens"]),
                           token_count(counts["cached_tokens"]), reasoning=token_count(counts["reasoning_tokens"]))
        chars = sum(len(str(p.get("text", ""))) + (len(orjson.dumps(p["functionCall"])) if "functionCall" in p else 0)
                    for p in self._parts)
        return usage, chars

    def result(self) -> Reply:
        if self._finish is None and not self._blocked:
            raise BadReply("the stream ended before any finishReason: answer incomplete")
        merged: dict[str, Any] = dict(self._last)
        if not self._blocked or self._parts:
            merged["candidates"] = [{"index": 0, "content": {"role": "model", "parts": self._parts},
                                     "finishReason": self._finish}]
        return normalise(merged)
