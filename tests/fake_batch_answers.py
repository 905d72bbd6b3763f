"""How the fake batch server (tests/fake_batch.py) answers one request, in each API's own shape.

The answer text is fake_openai's: ``echo: <last user message>``, or a JSON object when the
request asks for JSON. It comes back in the shape of the API the request was made to:

- ``chat``: ``/v1/chat/completions`` -> a chat completion (``fake_openai.chat_completion``)
- ``responses``: ``/v1/responses`` -> a Responses ``response`` object
- ``anthropic``: Messages ``params`` -> a ``message``; a forced tool (``tool_choice.type: tool``,
  how the connector sends an output schema) is answered with a ``tool_use`` block
- ``gemini``: a ``GenerateContentRequest`` -> a ``GenerateContentResponse``

A row picks its own fate with ``[[fake:<marker>]]`` anywhere in its text:

- ``item-error-<status>``: the request fails with that HTTP status, in the API's error shape
- ``slow``: the request runs last, so a batch that expires or is cancelled first leaves it
  unfinished (expired / cancelled)
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fake_openai import answer_for, chat_completion

MARKER = re.compile(r"\[\[fake:([a-z0-9-]+)\]\]")

# Anthropic error types by HTTP status (docs.anthropic.com "Errors").
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 529: "overloaded_error"}
# google.rpc.Code of an HTTP status (the inline error of a Gemini batch item is a google.rpc.Status).
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 503: 14, 504: 4}


def markers(body: Any) -> set[str]:
    """The ``[[fake:...]]`` markers anywhere in a request."""
    return set(MARKER.findall(json.dumps(body, ensure_ascii=False)))


def error_status(body: Any) -> int | None:
    """The status an ``item-error-<status>`` marker asks for, if any."""
    for marker in markers(body):
        if marker.startswith("item-error-") and marker.removeprefix("item-error-").isdigit():
            return int(marker.removeprefix("item-error-"))
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def user_text(api: str, body: dict[str, Any]) -> str:
    """The last user message of a request in this API's shape."""
    if api == "gemini":
        contents = [c for c in body.get("contents") or [] if isinstance(c, dict) and c.get("role", "user") == "user"]
        return _text((contents[-1].get("parts") if contents else None) or [])
    if api == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]
        return _text(users[-1].get("content")) if users else ""
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def _json_wanted(api: str, body: dict[str, Any]) -> bool:
    if api == "chat":
        return str((body.get("response_format") or {}).get("type", "")).startswith("json")
    if api == "responses":
        return str(((body.get("text") or {}).get("format") or {}).get("type", "")).startswith("json")
    if api == "gemini":
        return (body.get("generationConfig") or {}).get("responseMimeType") == "application/json"
    return False


def embedding_for(text: str) -> list[float]:
    """The fake vector of a text: exact in float32."""
    return [float(len(text)), float(len(text.split())), 0.25]


def answer(api: str, body: dict[str, Any], seq: int) -> dict[str, Any]:
    """The successful reply to one request; ``seq`` makes its ids unique."""
    if api == "embeddings":  # /v1/embeddings: a vector per input, made from its text
        given = body.get("input")
        texts = [given] if isinstance(given, str) else list(given or [])
        return {"object": "list", "model": body.get("model") or "fake-model",
                "data": [{"object": "embedding", "index": i, "embedding": embedding_for(str(t))}
                         for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": sum(len(str(t)) // 4 + 1 for t in texts),
                          "total_tokens": sum(len(str(t)) // 4 + 1 for t in texts)}}
    text = answer_for(user_text(api, body), _json_wanted(api, body))
    prompt_tokens, output_tokens = len(json.dumps(body)) // 4, len(text) // 4
    model = body.get("model") or "fake-model"
    if api == "chat":
        return chat_completion(body, text)
    if api == "responses":
        return {"id": f"resp_{seq:06d}", "object": "response", "created_at": 0, "status": "completed",
                "model": model, "output": [{"type": "message", "id": f"msg_{seq:06d}", "status": "completed",
                                            "role": "assistant",
                                            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens,
                          "total_tokens": prompt_tokens + output_tokens}}
    if api == "anthropic":
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            block: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{seq:06d}", "name": choice.get("name"),
                                     "input": json.loads(answer_for(user_text(api, body), True))}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": text}, "end_turn"
        return {"id": f"msg_{seq:06d}", "type": "message", "role": "assistant", "model": model, "content": [block],
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens}}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                              "totalTokenCount": prompt_tokens + output_tokens},
            "modelVersion": model, "responseId": f"resp-{seq:06d}"}


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """The body of a failed OpenAI request (as in an error file's ``response.body``)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error response body (also an errored batch result's ``error``)."""
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}


def grpc_status(status: int, message: str) -> dict[str, Any]:
    """A google.rpc.Status for an HTTP status (a Gemini batch item's ``error``)."""
    return {"code": GRPC_CODES.get(status, 2), "message": message}
