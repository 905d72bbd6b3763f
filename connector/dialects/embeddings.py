"""The OpenAI embeddings API shape (``POST {base}/embeddings``): a row's text in, a vector out.

A row's body is what it would send alone::

    {"model": ..., "input": "<the prompt rendered>", "dimensions"?: N, "encoding_format"?: "base64"}

and its normalised reply is the one-input answer of the same API (``data.0.embedding`` is
the vector, whatever the encoding; ``usage.prompt_tokens`` what it cost)::

    {"object": "list", "model": ..., "data": [{"object": "embedding", "index": 0, "embedding": [..]}],
     "usage": {"prompt_tokens": N, "completion_tokens": 0, "total_tokens": N}}

Several rows share one request (:meth:`EmbeddingsDialect.merge`, up to
``embeddings.inputs_per_request``, cut by the provider's limits in
:attr:`EmbeddingsDialect.limits`); :meth:`EmbeddingsDialect.split` gives each row its
one-input reply back, its share of the tokens by the rule of :func:`shares`. A short-form
``prompt`` is the text (a ``system_prompt`` is refused by the config); a full
``request_template`` writes ``input`` itself.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from connector.config.embedding_settings import EmbeddingsConfig
from connector.config.parts import RequestPart
from connector.dialects.base import FIRST_CLASS, Prepared, Reply, load_object, preview, text_of
from connector.dialects.openai_chat import ChatDialect
from connector.dialects.replies import usage_of
from connector.errors import BadReply

__all__ = ["EmbeddingsDialect", "RequestLimits", "as_vector", "shares", "vector_schema"]

# The reply path of a row's vector, and the JSON schema of a vector column: numbers, float32
# ("format": "float", as OpenAPI writes a 32-bit float), a fixed length when it is known.
VECTOR_STEP = "embedding"


def vector_schema(dimensions: int | None = None) -> dict[str, Any]:
    """The JSON schema of a vector column (``dimensions`` fixes its length when known)."""
    schema: dict[str, Any] = {"type": ["null", "array"], "items": {"type": "number", "format": "float"},
                              "description": "the embedding vector (float32)"}
    if dimensions is not None:
        schema.update(minItems=dimensions, maxItems=dimensions)
    return schema


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one request may carry: inputs, and estimated tokens summed over them."""

    inputs: int
    tokens: int | None


# OpenAI's published limits for /v1/embeddings: 2,048 inputs, 300,000 tokens summed across them.
OPENAI_LIMITS = RequestLimits(inputs=2048, tokens=300_000)
_NO_TEXT_OUT = "an embeddings request generates no text"


class EmbeddingsDialect(ChatDialect):
    """``POST {base}/embeddings`` with ``Authorization: Bearer``."""

    name: ClassVar[str] = "openai_embeddings"
    conversation_key: ClassVar[str] = "input"
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {n: _NO_TEXT_OUT for n in FIRST_CLASS if n != "user"}

    def __init__(self, config: RequestPart) -> None:
        super().__init__(config)
        settings = config.embeddings or EmbeddingsConfig()
        self._fields = {k: v for k, v in (("dimensions", settings.dimensions),
                                          ("encoding_format", settings.encoding_format)) if v is not None}
        self.limits = RequestLimits(min(settings.inputs_per_request, OPENAI_LIMITS.inputs), OPENAI_LIMITS.tokens)

    @property
    def base_url(self) -> str:
        return self.address.without_suffix("/embeddings", "/chat/completions", "/responses", "/messages")

    @property
    def endpoint_url(self) -> str:
        return self.url("/embeddings")

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.pop("messages", None)
        if messages is not None and "input" not in body:  # the short form: the user's text is the input
            turns = messages if isinstance(messages, list) else [messages]
            body["input"] = "\n\n".join(text_of(m.get("content")) for m in turns if isinstance(m, dict))
        return {**body, **self._fields}

    def stream_fields(self) -> dict[str, Any]:
        return {}

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        return Prepared(self.endpoint_url, dict(body), False)

    def probe_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(body)  # one input is the cheapest request there is

    def max_output_tokens(self, body: Mapping[str, Any]) -> int | None:
        return 0  # nothing is generated: no room to leave, no output to estimate

    def without_output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(body)  # no output limit: an embedding is the same under any

    def output_limit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def prompt_chars(self, body: Mapping[str, Any]) -> int:
        given = body.get("input", "")  # a merged request's is a list: its texts, not their JSON
        return sum(len(str(text)) for text in given) if isinstance(given, list) else len(str(given))

    def with_feedback(self, body: Mapping[str, Any], answer: str, ask: str) -> dict[str, Any] | None:
        return None

    def normalise(self, reply: Reply) -> Reply:
        return reply  # parse_reply built it whole

    def parse_reply(self, raw: bytes) -> Reply:
        reply = load_object(raw)
        data = reply.get("data")
        if not isinstance(data, list) or not data:
            if isinstance(reply.get("error"), (dict, str)):
                raise BadReply(f"the endpoint returned an error with status 200: {self.error_message(raw)}")
            raise BadReply(f"the reply has no 'data' list of embeddings: {preview(raw)}", retryable=False)
        items = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
        vectors = [{"object": "embedding", "index": i,
                    "embedding": as_vector(item.get("embedding") if isinstance(item, dict) else None)}
                   for i, item in enumerate(items)]
        usage = usage_of(reply.get("usage"))
        out: Reply = {"object": "list", "model": reply.get("model"), "data": vectors}
        if usage is not None and usage.get("prompt_tokens") is not None:
            tokens = usage["prompt_tokens"]
            out["usage"] = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
        return out

    # Several rows in one request --------------------------------------------------------

    def merge(self, bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One request for the rows' bodies (they differ only in ``input``, see :meth:`group_key`)."""
        return {**bodies[0], "input": [body.get("input", "") for body in bodies]}

    def group_key(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        """Bodies with the same key can share a request: everything but the input is equal."""
        return tuple(sorted((k, repr(v)) for k, v in body.items() if k != "input"))

    def split(self, reply: Reply, weights: Sequence[int]) -> list[Reply]:
        """Each row's one-input reply from the merged request's, in order; ``weights`` (each input's
        size) share the tokens out (:func:`shares`). BadReply when the count of vectors is wrong."""
        data = reply.get("data") or []
        if len(data) != len(weights):
            raise BadReply(f"the reply has {len(data)} embeddings for {len(weights)} inputs", retryable=False)
        tokens = (reply.get("usage") or {}).get("prompt_tokens")
        parts = shares(tokens, weights) if tokens is not None else [None] * len(weights)
        out = []
        for item, part in zip(data, parts, strict=True):
            one: Reply = {"object": "list", "model": reply.get("model"), "data": [{**item, "index": 0}]}
            if part is not None:
                one["usage"] = {"prompt_tokens": part, "completion_tokens": 0, "total_tokens": part}
            out.append(one)
        return out


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` tokens shared out in proportion to ``weights`` (each input's characters), in whole
    tokens that add up to ``total`` exactly: each gets the floor of its share, and the tokens left
    go to the largest remainders (the earlier row first on a tie)."""
    weight = sum(weights)
    if weight <= 0:
        weights, weight = [1] * len(weights), len(weights)
    exact = [total * w / weight for w in weights]
    parts = [int(x) for x in exact]
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))[:left]:
        parts[i] += 1
    return parts


def as_vector(value: Any) -> list[float]:
    """A vector from a reply: a list of numbers, or base64 of little-endian float32; BadReply otherwise."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise BadReply(f"an embedding is text that is not base64: {preview(value)}", retryable=False) from None
        if len(raw) % 4:
            raise BadReply(f"a base64 embedding has {len(raw)} bytes, not a whole number of float32",
                           retryable=False)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    raise BadReply(f"an embedding is neither a list of numbers nor base64: {preview(repr(value))}",
                   retryable=False)
