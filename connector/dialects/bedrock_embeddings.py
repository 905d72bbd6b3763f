"""Amazon Bedrock's embedding models (``POST {base}/model/{modelId}/invoke``, InvokeModel), with a Bedrock API
key as a bearer token.

The same row bodies, merging and shares as :mod:`connector.dialects.embeddings` (whose normalised reply this
one gives too); the body is the model family's own, per the Bedrock user guide's model parameters:

- Amazon Titan Text Embeddings (``amazon.titan-embed-text-v2:0``): one text a request::

      {"inputText": "<row's text>", "dimensions"?: N}  ->  {"embedding": [...], "inputTextTokenCount": n}

- Cohere Embed (``cohere.embed-english-v3``, ...): up to 96 texts a request::

      {"texts": ["<row's text>", ...], "input_type": "search_document"}  ->  {"embeddings": [[...], ...]}

  (``input_type`` from the request body when a template or ``extra_body`` sets it; the reply has no
  token count, so ``_prompt_tokens`` and ``_cost`` are null: unknown, not free).

The model id goes into the path percent-encoded (``amazon.titan-embed-text-v2%3A0``), as AWS's SDKs send
it. SigV4 signing is not offered for embeddings here: a config without ``api_key`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from connector.config.parts import RequestPart
from connector.dialects.base import Prepared, Reply, load_object, preview
from connector.dialects.embeddings import EmbeddingsDialect, RequestLimits, as_vector
from connector.dialects.usage import token_count
from connector.errors import BadReply, ConfigError

TITAN_LIMITS = RequestLimits(inputs=1, tokens=None)  # Titan: one inputText a request
COHERE_LIMITS = RequestLimits(inputs=96, tokens=None)  # Cohere Embed on Bedrock: 96 texts a call
DEFAULT_INPUT_TYPE = "search_document"  # a table's rows embedded to be searched


class BedrockEmbeddingsDialect(EmbeddingsDialect):
    """``POST {base}/model/{modelId}/invoke`` with ``Authorization: Bearer <Bedrock API key>``."""

    name: ClassVar[str] = "bedrock_embeddings"

    def __init__(self, config: RequestPart) -> None:
        super().__init__(config)
        if "encoding_format" in self._fields:
            raise ConfigError("embeddings.encoding_format: Bedrock's embedding models answer numbers here; remove it")
        if self._model is None:
            raise ConfigError(f"model: the {self.name} API puts the model id in the URL; set model (e.g. "
                              "amazon.titan-embed-text-v2:0)")
        if config.api_key is None or not config.api_key.get_secret_value():
            raise ConfigError(f"api_key: {self.name} authenticates with an Amazon Bedrock API key (a bearer token); "
                              "set api_key (SigV4 signing is not offered for embeddings here)")
        self.family = _family(str(self._model))
        if self.family == "cohere" and "dimensions" in self._fields:
            raise ConfigError("embeddings.dimensions: Cohere Embed v3 on Bedrock has no dimensions parameter; "
                              "remove it")
        cap = TITAN_LIMITS if self.family == "titan" else COHERE_LIMITS
        self.limits = RequestLimits(min(self.limits.inputs, cap.inputs), cap.tokens)

    @property
    def base_url(self) -> str:
        return self.address.base.split("/model/", 1)[0]

    @property
    def endpoint_url(self) -> str:
        return self.prepare({"model": self.model or ""}).url

    def prepare(self, body: Mapping[str, Any]) -> Prepared:
        model = str(body.get("model") or self.model or "")
        given = body.get("input", "")
        texts = [str(t) for t in (given if isinstance(given, list) else [given])]
        url = self.url(f"/model/{quote(model, safe='')}/invoke")
        if self.family == "titan":
            wire: dict[str, Any] = {"inputText": texts[0] if texts else ""}
            if "dimensions" in body:
                wire["dimensions"] = body["dimensions"]
        else:
            wire = {"texts": texts, "input_type": body.get("input_type", DEFAULT_INPUT_TYPE)}
            if "truncate" in body:
                wire["truncate"] = body["truncate"]
        return Prepared(url, wire, False)

    def parse_reply(self, raw: bytes) -> Reply:
        reply = load_object(raw)
        if self.family == "titan":
            vectors = [reply.get("embedding")] if "embedding" in reply else None
            tokens = token_count(reply.get("inputTextTokenCount"))
        else:
            found = reply.get("embeddings")
            vectors = found.get("float") if isinstance(found, dict) else found  # with embedding_types: by type
            tokens = None
        if not isinstance(vectors, list) or not vectors:
            raise BadReply(f"the reply has no embedding: {preview(raw)}", retryable=False)
        data = [{"object": "embedding", "index": i, "embedding": as_vector(v)} for i, v in enumerate(vectors)]
        out: Reply = {"object": "list", "model": self.model, "data": data}
        if tokens is not None:
            out["usage"] = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
        return out


def _family(model: str) -> str:
    """Which body the model id takes: titan or cohere; ConfigError for another."""
    name = model.lower()
    if "titan-embed" in name:
        return "titan"
    if "cohere.embed" in name:
        return "cohere"
    raise ConfigError(f"model: {model!r} is neither an Amazon Titan text embeddings model (amazon.titan-embed-...) "
                      "nor a Cohere Embed model (cohere.embed-...), the two bodies bedrock_embeddings speaks")
