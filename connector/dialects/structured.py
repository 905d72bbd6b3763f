"""Structured output when an endpoint will not take ``json_schema``: JSON mode with the schema in the
prompt, then the schema in the prompt alone.

Many gateways and servers refuse ``response_format: json_schema`` (a 400 naming ``response_format``
or ``json_schema``; llama-cpp-python answers 500) though they would answer a JSON-mode request, or a
plain one that asks for JSON. A chat-completions dialect starts in mode ``json_schema``; each such
refusal moves it one mode down, for the rest of the run, and the refused request is sent again
(:meth:`connector.dialects.openai_chat.ChatDialect.adapt`). The answers are validated against the
schema as before, whichever mode asked for them. Only the body on the wire changes: cache keys stay
those of the ``json_schema`` request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from connector.dialects.bodies import loads
from connector.jsonbytes import dumps

Mode = Literal["json_schema", "json_object", "prompt"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "prompt")
SAID: dict[Mode, str] = {
    "json_schema": "response_format json_schema",
    "json_object": "JSON mode (response_format json_object) with the schema in the prompt",
    "prompt": "the schema in the prompt alone (no response_format)",
}

# An error that names the structured-output request: response_format, json_schema or its fields.
_NAMES_IT = re.compile(r"response_format|json_schema|structured output", re.IGNORECASE)
# Statuses such a refusal comes with: 400 and 422 (validation), 500 (llama-cpp-python's validation error).
_STATUSES = frozenset({400, 422, 500})


def refuses(status: int, message: str) -> bool:
    """The endpoint refused the request for its structured-output part."""
    return status in _STATUSES and _NAMES_IT.search(message) is not None


def is_json(text: str) -> bool:
    """``text`` is JSON (a fenced or padded object counts: validation reads those)."""
    stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        loads(stripped)
    except ValueError:
        return False
    return True


def instruction(schema: Mapping[str, Any]) -> str:
    """The schema as the prompt states it."""
    return ("Reply with only a JSON object, no other text, that conforms to this JSON Schema:\n"
            + dumps(dict(schema)).decode())


def on_wire(body: dict[str, Any], mode: Mode, ask: str) -> dict[str, Any]:
    """``body`` (a chat-completions body with a json_schema response_format) as ``mode`` sends it: the
    schema, as :func:`instruction` states it (``ask``), goes into the system message, first, where it is the
    same for every row (cacheable)."""
    if mode == "json_schema":
        return body
    out = dict(body)
    if mode == "json_object":
        out["response_format"] = {"type": "json_object"}
    else:
        out.pop("response_format", None)
    messages = list(out.get("messages") or [])
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system" and isinstance(first.get("content"), str):
        messages[0] = {**first, "content": f"{first['content']}\n\n{ask}"}
    else:
        messages.insert(0, {"role": "system", "content": ask})
    out["messages"] = messages
    return out
