"""API shapes: one module per shape, each a :class:`~connector.dialects.base.Dialect`.

``dialect_for(config)`` picks the one ``api_compatibility`` names (after the
provider preset and aliases are resolved). Building a dialect checks the
config against what the shape can express, so an unsupported parameter is a
config error when the config loads, naming the parameter and the shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.config.providers import canonical
from connector.dialects.base import Dialect, Prepared, Reply, StreamAssembler
from connector.dialects.openai_chat import RequestBuilder

if TYPE_CHECKING:
    from connector.config.model import SourceConfig

__all__ = ["Dialect", "Prepared", "Reply", "RequestBuilder", "StreamAssembler", "dialect_for"]


def dialect_for(config: SourceConfig) -> Dialect:
    """The dialect of the configured API shape; ConfigError if the config asks for what it cannot express."""
    shape = canonical(config.api_compatibility)
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
    if shape == "amazon_bedrock":
        from connector.dialects.bedrock import BedrockDialect

        return BedrockDialect(config)
    from connector.dialects.openai_chat import ChatDialect

    return ChatDialect(config)
