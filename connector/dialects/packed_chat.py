"""Several chat rows in one request (``rows_per_request``): the packed body, and each row's reply from its answer.

Rows can share a request when their chat-completions bodies are equal but for the last user message's text
(:func:`pack_key`): the shared part (system prompt, earlier turns, parameters) is sent once, and the last
user message becomes the rows' texts as a JSON object keyed by id, with the ask to answer with one JSON object
keyed by the same ids (:func:`pack`). Where the row asks for a JSON schema (``output_schema``), the packed
request asks for a schema whose properties are the ids, each the row's schema; otherwise each id's answer is a
string.

The ids are the contract: :func:`unpack` gives a row the answer under its own id, never the one at its
position. An id missing, given twice, or with an answer of the wrong kind gives that row no answer (the
pipeline asks it again alone); an id not asked for is ignored. An answer the model put under the wrong id
(two rows swapped) cannot be told from a right one by its content, so it is not detected.

Tokens are shared out by :func:`shares` (whole tokens, adding up to the request's exactly): prompt tokens
(and cached prompt tokens) in proportion to each row's part of the packed prompt (its id and text as they
appear in the JSON object), completion tokens (and reasoning tokens) in proportion to the length of each
row's answer as it appears in the reply; a cost the endpoint reported is shared like the prompt and
completion tokens together. Rows with no answer still get their share of the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.dialects.base import Reply, chat_reply
from connector.dialects.embeddings import shares
from connector.dialects.usage import TokenUsage, usage_from

# What a packed request asks, before the rows' JSON object.
INSTRUCTION = (
    "Below is a JSON object mapping ids to separate requests. Answer each request on its own, as if it were the "
    "only one. Reply with only a JSON object mapping each id, exactly as given, to {kind}; every id once, no "
    "other keys."
)
_KINDS = {"string": "its answer as a string", "schema": "its answer as a JSON object in the schema asked for"}
# Body fields whose answer a packed reply cannot carry per row: several choices, log-probabilities, tools.
REFUSED_FIELDS = ("n", "logprobs", "top_logprobs", "tools", "functions", "tool_choice", "function_call")


def pack_key(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Bodies with the same key can share a packed request (all but the last user message's text is equal);
    None when this body cannot be packed (no final user message with plain text, or a field of
    :data:`REFUSED_FIELDS`)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or any(f in body for f in REFUSED_FIELDS):
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user" or not isinstance(last.get("content"), str):
        return None
    rest = {k: v for k, v in body.items() if k != "messages"}
    return (json.dumps(rest, sort_keys=True, default=str), json.dumps(messages[:-1], sort_keys=True, default=str))


def _text(body: Mapping[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def _row_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the row's own request asks for, or None (a free-text answer)."""
    form = body.get("response_format")
    if isinstance(form, Mapping) and form.get("type") == "json_schema":
        spec = form.get("json_schema")
        if isinstance(spec, Mapping) and isinstance(spec.get("schema"), Mapping):
            return dict(spec["schema"])
    return None


def pack(bodies: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> dict[str, Any]:
    """One request for ``bodies`` (equal :func:`pack_key`), each row's text under its id. The output-token cap,
    where the row has one, is the rows' caps added up."""
    first = bodies[0]
    schema = _row_schema(first)
    texts = {i: _text(b) for i, b in zip(ids, bodies, strict=True)}
    ask = INSTRUCTION.format(kind=_KINDS["schema" if schema is not None else "string"])
    body: dict[str, Any] = {**first, "messages": [*first["messages"][:-1], {
        "role": "user", "content": f"{ask}\n\n{json.dumps(texts, ensure_ascii=False)}"}]}
    item = schema if schema is not None else {"type": "string"}
    body["response_format"] = {"type": "json_schema", "json_schema": {
        "name": "answers_by_id", "strict": True,
        "schema": {"type": "object", "properties": dict.fromkeys(ids, item), "required": list(ids),
                   "additionalProperties": False}}}
    for cap in ("max_tokens", "max_completion_tokens"):
        if isinstance(first.get(cap), int):
            body[cap] = sum(int(b.get(cap) or 0) for b in bodies)
    return body


def prompt_weights(bodies: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> list[int]:
    """Each row's part of the packed prompt: its id and text as the JSON object carries them."""
    return [len(json.dumps({i: _text(b)}, ensure_ascii=False)) for i, b in zip(ids, bodies, strict=True)]


@dataclass(slots=True)
class Unpacked:
    """One row's part of a packed reply: its own reply (None: no usable answer under its id) and its share
    of the request's usage (the body of a reply's ``usage``, None when the reply said none)."""

    reply: Reply | None
    usage: dict[str, Any] | None


def unpack(reply: Mapping[str, Any], ids: Sequence[str], weights: Sequence[int], schema: bool,
           headers: Mapping[str, str] | None = None) -> list[Unpacked]:
    """Each id's reply, in the order of ``ids`` (see the module doc for what gives a row none)."""
    answers = _answers(reply)
    texts: list[str | None] = []
    for i in ids:
        value = answers.get(i, _MISSING) if answers is not None else _MISSING
        ok = isinstance(value, dict) if schema else isinstance(value, str)
        texts.append((json.dumps(value, ensure_ascii=False) if schema else str(value)) if ok else None)
    sizes = [len(json.dumps(answers[i], ensure_ascii=False)) if answers is not None and i in answers
             and answers[i] is not _DUPLICATE else 0 for i in ids]
    usage = usage_from(reply, headers)
    parts = _usage_shares(usage, weights, sizes)
    out = []
    for text, part in zip(texts, parts, strict=True):
        one = None
        if text is not None:
            one = chat_reply(text, "stop", meta={"model": reply.get("model"), "packed": {"rows": len(ids)}})
            if part is not None:
                one["usage"] = part
        out.append(Unpacked(one, part))
    return out


_MISSING = object()
_DUPLICATE = object()


def _answers(reply: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reply's JSON object of answers by id (an id given twice maps to :data:`_DUPLICATE`), or None."""
    choices = reply.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content") if isinstance(choices[0], Mapping) else None
    if not isinstance(content, str):
        return None
    text = content.strip()
    if text.startswith("```"):  # a fenced block: the JSON inside
        text = text.strip("`").removeprefix("json").strip()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            out[key] = _DUPLICATE if key in out else value
        return out

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _usage_shares(usage: TokenUsage, prompt: Sequence[int], answers: Sequence[int]) -> list[dict[str, Any] | None]:
    """Each row's usage block: the request's, shared out (module doc)."""
    if not usage.reported:
        return [None] * len(prompt)
    p = shares(usage.prompt or 0, prompt)
    c = shares(usage.completion or 0, answers)
    cached = shares(usage.cached, prompt) if usage.cached is not None else None
    reasoning = shares(usage.reasoning, answers) if usage.reasoning is not None else None
    out: list[dict[str, Any] | None] = []
    for k in range(len(prompt)):
        block: dict[str, Any] = {"prompt_tokens": p[k], "completion_tokens": c[k], "total_tokens": p[k] + c[k]}
        if cached is not None:
            block["prompt_tokens_details"] = {"cached_tokens": cached[k]}
        if reasoning is not None:
            block["completion_tokens_details"] = {"reasoning_tokens": reasoning[k]}
        out.append(block)
    if usage.reported_cost is not None:
        _share_cost(out, usage.reported_cost, [pk + ck for pk, ck in zip(p, c, strict=True)])
    return out


def _share_cost(blocks: list[dict[str, Any] | None], cost: float, tokens: Sequence[int]) -> None:
    """A reported cost shared by tokens; the last row takes what is left, so the parts add up to the cost."""
    total = sum(tokens) or len(tokens)
    given = 0.0
    for k, block in enumerate(blocks):
        assert block is not None
        part = cost - given if k == len(blocks) - 1 else cost * (tokens[k] if sum(tokens) else 1) / total
        block["cost"] = part
        given += part
