"""API shapes: one module per shape, each a :class:`~connector.dialects.base.Dialect`.

``dialect_for(config)`` picks the one ``api_compatibility`` names (after the
provider preset and aliases are resolved). A run builds one, at its start
(``check``, ``discover``, ``read``, the scale-out driver), and uses it for every
body and request. Building it checks the config against what the shape can
express, so an unsupported parameter (or a missing optional extra) is a config
error before any row, naming the parameter and the shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.dialects.base import Dialect, Prepared, Reply, StreamAssembler
from connector.dialects.openai_chat import ChatDialect
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.config.parts import RequestPart

__all__ = ["Dialect", "Prepared", "Reply", "StreamAssembler", "dialect_for"]


def dialect_for(config: RequestPart) -> Dialect:
    """The dialect of the configured API shape; ConfigError if the config asks for what it cannot express."""
    dialect = _dialect_for(config)
    if dialect.address.userinfo is not None:
        _one_authorization(config, dialect)
    return dialect


def _one_authorization(config: RequestPart, dialect: ChatDialect) -> None:
    """url's user:password@ goes as ``Authorization: Basic``; a request has one Authorization header."""
    if any(name.lower() == "authorization" for name in config.headers):
        taken_by, or_else = "headers.Authorization", ", or that header"
    elif dialect.sends_authorization():
        key = config.api_key is not None and config.api_key.get_secret_value()
        taken_by, or_else = ("api_key (as Bearer)", ", or api_key") if key else (
            f"the {dialect.name} signature or OAuth token", "")
    else:
        return
    raise ConfigError(
        f"url: its user:password@ would be sent as 'Authorization: Basic', but {taken_by} already takes that "
        f"header, and a request carries only one; remove user:password@ from url{or_else}"
    )


def _dialect_for(config: RequestPart) -> ChatDialect:
    shape = config.endpoint.shape
    if shape == "openai_responses":
        from connector.dialects.openai_responses import ResponsesDialect

        return ResponsesDialect(config)
    if shape == "anthropic_messages":
        from connector.dialects.anthropic import AnthropicDialect

        return AnthropicDialect(config)
    if shape == "gemini_generate_content":
        from connector.dialects.gemini import GeminiDialect

        return GeminiDialect(config)
    if shape == "google_vertex":
        from connector.dialects.vertex import VertexDialect

        return VertexDialect(config)
    if shape == "azure_openai":
        from connector.dialects.azure import AzureDialect

        return AzureDialect(config)
    if shape == "openai_embeddings":
        from connector.dialects.embeddings import EmbeddingsDialect

        return EmbeddingsDialect(config)
    if shape == "gemini_embeddings":
        from connector.dialects.gemini_embeddings import GeminiEmbeddingsDialect

        return GeminiEmbeddingsDialect(config)
    if shape == "bedrock_embeddings":
        from connector.dialects.bedrock_embeddings import BedrockEmbeddingsDialect

        return BedrockEmbeddingsDialect(config)
    if shape == "amazon_bedrock":
        from connector.dialects.bedrock import BedrockDialect

        return BedrockDialect(config)
    return ChatDialect(config)
