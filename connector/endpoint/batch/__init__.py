"""Provider batch APIs: half the price for requests that can wait.

One protocol per family (:class:`~connector.endpoint.batch.base.BatchAPI`): OpenAI-format batches
(OpenAI, Azure OpenAI, OpenAI-compatible providers; chat completions or Responses), Anthropic
Message Batches and Gemini Batch Mode. Each builds its provider's batch input from the bodies
the dialect built, cuts it to the provider's limits (:func:`~connector.endpoint.batch.base.chunk`),
submits, polls and reads the results back into replies normalised by the same dialect, so a
row answered by a batch looks like a row answered by a normal request. ``batch_api(config,
transport)`` picks the protocol of the configured API shape; Bedrock and Vertex batch
inference need cloud storage buckets and are refused with a config error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.config.providers import canonical
from connector.dialects import Dialect, dialect_for
from connector.endpoint.batch.base import (
    BatchAPI,
    BatchLimits,
    BatchRequest,
    BatchStatus,
    Chunks,
    ItemResult,
    RequestCounts,
    Submission,
    check_custom_id,
    chunk,
    fingerprint,
)
from connector.endpoint.batch.http import BatchHTTP
from connector.endpoint.transport import Transport
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.config.model import SourceConfig

__all__ = ["BatchAPI", "BatchLimits", "BatchRequest", "BatchStatus", "Chunks", "ItemResult", "RequestCounts",
           "Submission", "batch_api", "check_custom_id", "chunk", "fingerprint"]

SUPPORTED = ("openai_chat_completions", "openai_responses", "azure_openai", "anthropic_messages",
             "gemini_generate_content")
_UNSUPPORTED = {
    "amazon_bedrock": "Bedrock batch inference (CreateModelInvocationJob) reads its input from and writes its "
                      "output to S3 buckets, which this connector does not manage",
    "google_vertex": "Vertex AI batch prediction reads its input from and writes its output to Cloud Storage "
                     "or BigQuery, which this connector does not manage",
}


def batch_api(config: SourceConfig, transport: Transport, dialect: Dialect | None = None,
              completion_window: str = "24h") -> BatchAPI:
    """The batch protocol of the configured API shape; ConfigError naming what is unsupported."""
    shape = canonical(config.api_compatibility)
    if shape in _UNSUPPORTED:
        raise ConfigError(f"batch: the {shape} API shape has no batch mode here: {_UNSUPPORTED[shape]}. Turn "
                          f"batch off, or use a shape with a batch API: {', '.join(SUPPORTED)}")
    dialect = dialect if dialect is not None else dialect_for(config)
    http = BatchHTTP(transport, dialect, float(config.timeout))
    from connector.dialects.anthropic import AnthropicDialect
    from connector.dialects.gemini import GeminiDialect
    from connector.dialects.openai_chat import ChatDialect

    if isinstance(dialect, AnthropicDialect):
        from connector.endpoint.batch.anthropic import AnthropicBatches

        return AnthropicBatches(dialect, http)
    if isinstance(dialect, GeminiDialect):
        from connector.endpoint.batch.gemini import GeminiBatches

        return GeminiBatches(dialect, http)
    if isinstance(dialect, ChatDialect):
        from connector.endpoint.batch.openai import OpenAIBatches

        return OpenAIBatches(dialect, http, completion_window)
    raise ConfigError(f"batch: the {shape} API shape has no batch mode here; use one of {', '.join(SUPPORTED)}")
