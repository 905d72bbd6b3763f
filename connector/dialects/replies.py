"""The normalised reply, enforced: every reply passes :func:`normalise` before the connector reads it.

Dialects translate each API shape into the chat-completion shape described in
:mod:`connector.dialects.base`; servers deviate inside it. Here the fields the
connector reads get the types that contract promises, whichever dialect built
the reply, or the reply is refused as :class:`~connector.errors.BadReply`
(error class ``bad_reply``), never recorded as ``ok`` with a value of the wrong
type:

- ``choices[0].message`` is an object;
- ``content`` is text or null: a list of parts (``[{"type": "text", "text": ...}]``,
  as Mistral sends) becomes its text parts joined; a number or an object is refused;
- ``tool_calls`` is a list when present;
- ``usage`` holds whole, non-negative token counts: ``"5"`` becomes 5, anything
  unreadable (``"n/a"``, a list) is dropped rather than crashing a tally later,
  so the answer is still delivered and cached. :func:`connector.dialects.usage.usage_from`
  reads it, its cache and reasoning details included.

Refusals are not retried: a server that sent this shape once sends it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.dialects.base import Reply, preview
from connector.dialects.usage import token_count
from connector.errors import BadReply, ErrorClass

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Part types whose text is the answer; other parts (images, reasoning, refusals) are not.
_TEXT_PARTS = frozenset({"text", "output_text"})


def content_text(value: Any, where: str = "content") -> str | None:
    """The text of a message's ``content``: a string, null, or the text parts of a list joined."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str) and \
                    part.get("type", "text") in _TEXT_PARTS:
                texts.append(part["text"])
            elif not isinstance(part, dict):
                raise BadReply(f"the reply's {where} holds a part that is neither text nor an object: "
                               f"{preview(repr(part))}", retryable=False)
        return "".join(texts)
    raise BadReply(f"the reply's {where} is {_kind(value)}, not text: {preview(repr(value))}", retryable=False)


def usage_of(value: Any) -> dict[str, Any] | None:
    """``usage`` with readable token counts, or None when nothing in it can be read."""
    if not isinstance(value, Mapping):
        return None
    if isinstance(value, dict) and all(type(value.get(name)) is int and value[name] >= 0 for name in _TOKEN_FIELDS):
        return value  # the usual reply: whole counts, nothing to change or copy
    usage = dict(value)
    for name in _TOKEN_FIELDS:
        if name in usage:
            usage[name] = token_count(usage[name])
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if usage.get("total_tokens") is None and prompt is not None and completion is not None:
        usage["total_tokens"] = prompt + completion
    if all(usage.get(name) is None for name in _TOKEN_FIELDS):
        return None
    return usage


def normalise(reply: Reply) -> Reply:
    """``reply`` with the types the connector relies on; BadReply when they cannot be had."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadReply(f"the reply has no usable 'choices': {preview(repr(choices))}", retryable=False)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BadReply(f"the reply's choices[0].message is {_kind(message)}, not an object: "
                       f"{preview(repr(message))}", retryable=False)
    content = message.get("content")
    text = content_text(content, "choices[0].message.content")
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise BadReply(f"the reply's tool_calls is {_kind(calls)}, not a list", retryable=False)
    usage = usage_of(reply.get("usage"))
    usage_changed = "usage" in reply and usage != reply["usage"]
    if text is content and not usage_changed:
        return reply  # already normal: the usual case costs no copy
    out = dict(reply)
    if text is not content:
        out["choices"] = [{**choice, "message": {**message, "content": text}}, *choices[1:]]
    if usage is None:
        out.pop("usage", None)
    else:
        out["usage"] = usage
    return out


def missing_answer(reply: Mapping[str, Any]) -> tuple[ErrorClass, str] | None:
    """``(error class, why)`` when a well-formed reply holds no answer, else None.

    ``content`` null or blank with no tool call, whatever ``finish_reason`` says (a gateway
    whose upstream failed sends ``content: null`` with ``stop``; Responses, Messages and
    generateContent replies with no text normalise to the same), is ``bad_reply``; OpenAI's
    ``refusal`` in place of content is ``content_filter``. A ``length`` cut is left to the
    truncation rule, and a ``content_filter`` finish already says why there is nothing.
    """
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        return None  # not a text reply (embeddings): its own dialect judged it
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish in ("length", "content_filter"):
        return None
    message = choice.get("message") or {}
    content = message.get("content")
    if (isinstance(content, str) and content.strip()) or message.get("tool_calls"):
        return None
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        return "content_filter", f"the model refused to answer: {preview(refusal)}"
    said = "null" if content is None else "empty"
    return "bad_reply", (f"the reply holds no answer (content {said}, finish_reason {finish}): "
                         "an empty answer is not reported as ok")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
