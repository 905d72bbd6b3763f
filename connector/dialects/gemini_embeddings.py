"""Gemini's embeddings API shape (``POST {base}/models/{model}:batchEmbedContents``).

The same row bodies, merging and shares as :mod:`connector.dialects.embeddings` (the OpenAI shape,
whose normalised reply this one gives too); only the wire differs, per the Gemini API reference::

    {"requests": [{"model": "models/<model>", "content": {"parts": [{"text": "<row's text>"}]},
                   "outputDimensionality"?: N}, ...]}
    -> {"embeddings": [{"values": [...]}, ...]}      (in request order)

The key goes as ``x-goog-api-key``. The reply carries token counts only where the server adds
``usageMetadata.promptTokenCount``; without it a row's tokens and cost are unknown (null), not 0.
``embeddings.encoding_format`` has no Gemini equivalent (a config error); batch mode is not offered
(Gemini's asynchronous embedding batches are not implemented here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connector.config.parts import RequestPart
from connector.dialects.base import Prepared, Reply, load_object, preview
from connector.dialects.embeddings import EmbeddingsDialect, RequestLimits, as_vector
from connector.dialects.gemini import key_header
from connector.dialects.usage import token_count
from connector.errors import BadReply, ConfigError

# One batchEmbedContents request takes at most 100 requests (the API's documented cap; not verified here).
GEMINI_LIMITS = RequestLimits(inputs=100, tokens=None)


class GeminiEmbeddingsDialect(EmbeddingsDialect):
    """``POST {base}/models/{model}:batchEmbedContents`` with ``x-goog-api-key``."""

    name: ClassVar[str] = "gemini_embeddings"

    def __init__(self, config: RequestPart) -> None:
        super().__init__(config)
        if "encoding_format" in self._fields:
            raise ConfigError("embeddings.encoding_format: the Gemini embeddings API always answers numbers; "
                              "remove it")
        if self._model is None:
            raise ConfigError(f"model: the {self.name} API puts the model in the URL; set model")
        self.limits = RequestLimits(min(self.limits.inputs, GEMINI_LIMITS.inputs), GEMINI_LIMITS.tokens)

    @property
    def base_url(self) -> str:
        return self.address.base.split("/models/", 1)[0]

    @property
    def endpoint_url(self) -> str:
        return self.prepare({"model": self.model or ""}).url

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        model = str(body.get("model") or self.model or "").removeprefix("models/")
        given = body.get("input", "")
        texts = given if isinstance(given, list) else [given]
        extra = {"outputDimensionality": body["dimensions"]} if "dimensions" in body else {}
        requests = [{"model": f"models/{model}", "content": {"parts": [{"text": str(t)}]}, **extra} for t in texts]
        return Prepared(self.url(f"/models/{model}:batchEmbedContents"), {"requests": requests}, False)

    def auth_headers(self) -> dict[str, str]:
        return key_header(self.config)

    def parse_reply(self, raw: bytes) -> Reply:
        reply = load_object(raw)
        items = reply.get("embeddings")
        if not isinstance(items, list) or not items:
            raise BadReply(f"the reply has no 'embeddings' list: {preview(raw)}", retryable=False)
        data = [{"object": "embedding", "index": i,
                 "embedding": as_vector(item.get("values") if isinstance(item, dict) else None)}
                for i, item in enumerate(items)]
        out: Reply = {"object": "list", "model": self.model, "data": data}
        usage = reply.get("usageMetadata")
        tokens = token_count(usage.get("promptTokenCount")) if isinstance(usage, dict) else None
        if tokens is not None:
            out["usage"] = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
        return out
