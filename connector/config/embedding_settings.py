"""The ``embeddings`` section: what an embeddings API shape sends beside each row's text.

The shape itself (``api_compatibility: openai_embeddings``) is in
:mod:`connector.dialects.embeddings`; here are its settings and the rules a config
with it must keep (:func:`check_embeddings`), worded for the config. What the
shape does is in docs/API_SHAPES.md ("Embeddings").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import Field

from connector.config.providers import canonical
from connector.config.sections import Strict

EMBEDDING_SHAPES = ("openai_embeddings", "gemini_embeddings", "bedrock_embeddings")
# The output column an embeddings config gets when it names none: the vector of each row.
DEFAULT_COLUMNS = {"embedding": "data.0.embedding"}


class EmbeddingsConfig(Strict):
    """Settings of an embeddings request (api_compatibility openai_embeddings)."""

    inputs_per_request: int = Field(
        16, ge=1, le=2048, title="Rows per request",
        description="Up to this many rows' texts are embedded in one request (fewer when the provider's limit on "
                    "inputs or tokens per request is lower: OpenAI 2,048 inputs, 300,000 tokens).",
        json_schema_extra={"order": 0},
    )
    dimensions: int | None = Field(
        None, gt=0, title="Dimensions",
        description="Sent as 'dimensions' (models that can shorten their vectors, e.g. text-embedding-3); also "
                    "the vector column's fixed size in the schema.",
        json_schema_extra={"order": 1},
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        None, title="Encoding format",
        description="Sent as 'encoding_format'. base64 vectors (little-endian float32) are decoded: the column "
                    "holds numbers either way.",
        json_schema_extra={"order": 2},
    )


class _Embeddable(Protocol):
    """The config fields the embeddings rules read (SourceConfig has them)."""

    @property
    def api_compatibility(self) -> str: ...
    @property
    def embeddings(self) -> EmbeddingsConfig | None: ...
    @property
    def system_prompt(self) -> str | None: ...
    @property
    def stream(self) -> bool: ...
    @property
    def output_schema(self) -> Mapping[str, Any] | None: ...
    @property
    def model_fields_set(self) -> set[str]: ...


def is_embeddings(shape: str) -> bool:
    """Whether the API shape embeds text rather than generating it."""
    return canonical(shape) in EMBEDDING_SHAPES


def default_columns(data: Any) -> Any:
    """The raw config with the embeddings shape's output column when it names none (a default
    that depends on the shape, applied before validation)."""
    if isinstance(data, dict) and is_embeddings(str(data.get("api_compatibility", ""))) \
            and not data.get("response_template"):
        return {**data, "response_template": {"columns": dict(DEFAULT_COLUMNS)}}
    return data


def check_embeddings(config: _Embeddable, json_columns: Mapping[str, str]) -> None:
    """ValueError (worded for the config) for settings an embeddings request cannot carry."""
    if not is_embeddings(config.api_compatibility):
        if config.embeddings is not None:
            raise ValueError("embeddings: these settings apply to api_compatibility openai_embeddings, "
                             "gemini_embeddings or bedrock_embeddings only; remove them or set api_compatibility")
        return
    refused = [("system_prompt", bool(config.system_prompt), "an embedding has no system message"),
               ("stream", config.stream, "an embeddings answer is never streamed"),
               ("output_schema", config.output_schema is not None, "an embedding is a vector, not JSON"),
               ("response_template.json_columns", bool(json_columns), "an embedding is a vector, not JSON")]
    for field, given, why in refused:
        if given:
            raise ValueError(f"{field}: {why}; remove it (api_compatibility is {config.api_compatibility})")
