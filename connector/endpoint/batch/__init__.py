"""Provider batch APIs: half the price for requests that can wait.

One protocol per family (:class:`~connector.endpoint.batch.protocol_base.BatchAPI`): OpenAI-format batches
(OpenAI, Azure OpenAI, OpenAI-compatible providers; chat completions or Responses), Anthropic
Message Batches and Gemini Batch Mode. Each builds its provider's batch input from the bodies
the dialect built, cuts it to the provider's limits (:func:`~connector.endpoint.batch.protocol_base.chunk`),
submits, polls and reads the results back into replies normalised by the same dialect, so a
row answered by a batch looks like a row answered by a normal request. ``batch_api(config,
transport)`` picks the protocol of the configured API shape; Bedrock and Vertex batch
inference need cloud storage buckets and are refused with a config error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from connector.config.batch import BATCH_SHAPES, NO_BATCH
from connector.config.providers import canonical
from connector.dialects import Dialect
from connector.endpoint.batch.http import BatchHTTP
from connector.endpoint.batch.protocol_base import (
    BatchAPI,
    BatchLimits,
    BatchRequest,
    BatchStatus,
    Chunker,
    Chunks,
    ItemResult,
    RequestCounts,
    Submission,
    check_custom_id,
    chunk,
    fingerprint,
    submit,
)
from connector.endpoint.transport import Transport
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.config.parts import RequestPart

__all__ = ["BatchAPI", "BatchLimits", "BatchRequest", "BatchStatus", "Chunker", "Chunks", "ItemResult", "RequestCounts",
           "Submission", "batch_api", "check_custom_id", "chunk", "fingerprint", "submit"]


def batch_api(config: RequestPart, transport: Transport, dialect: Dialect) -> BatchAPI:
    """The batch protocol of the configured API shape, within ``batch.max_requests_per_batch``; ConfigError
    naming what is unsupported (the config refuses it first, see :mod:`connector.config.batch`)."""
    shape = canonical(config.api_compatibility)
    if shape in NO_BATCH:
        raise ConfigError(f"batch: the {shape} API shape has no batch mode here: {NO_BATCH[shape]}. Turn "
                          f"batch off, or use a shape with a batch API: {', '.join(BATCH_SHAPES)}")
    http = BatchHTTP(transport, dialect, config.timeout)
    from connector.dialects.anthropic import AnthropicDialect
    from connector.dialects.gemini import GeminiDialect
    from connector.dialects.openai_chat import ChatDialect

    if isinstance(dialect, AnthropicDialect):
        from connector.endpoint.batch.anthropic_batches import LIMITS, AnthropicBatches

        return AnthropicBatches(dialect, http, _capped(LIMITS, config))
    if isinstance(dialect, GeminiDialect):
        from connector.endpoint.batch.gemini_batches import LIMITS, GeminiBatches

        return GeminiBatches(dialect, http, _capped(LIMITS, config))
    if isinstance(dialect, ChatDialect):
        from connector.endpoint.batch.openai_batches import LIMITS, OpenAIBatches

        return OpenAIBatches(dialect, http, config.batch.completion_window, _capped(LIMITS, config))
    raise ConfigError(f"batch: the {shape} API shape has no batch mode here; use one of {', '.join(BATCH_SHAPES)}")


def _capped(limits: BatchLimits, config: RequestPart) -> BatchLimits:
    """The provider's limits, with ``batch.max_requests_per_batch`` when it is lower."""
    most = config.batch.max_requests_per_batch
    if most is None or (limits.max_requests is not None and limits.max_requests <= most):
        return limits
    return replace(limits, max_requests=most)
