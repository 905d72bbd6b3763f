"""Batch mode settings: the rows go to the provider's batch API instead of one request each.

Which API shapes have a batch API here (:data:`BATCH_SHAPES`), why the others have none
(:data:`NO_BATCH`), and the rules a batch config must keep (:func:`check_batch`): the one home
of that knowledge, read by the config model and by the batch protocols
(:mod:`connector.endpoint.batch`). What the settings do is in docs/BATCH.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from connector.config.input import InputConfig
from connector.config.providers import canonical

BATCH_SHAPES = ("openai_chat_completions", "openai_responses", "azure_openai", "anthropic_messages",
                "gemini_generate_content", "openai_embeddings")
NO_BATCH = {
    "amazon_bedrock": "Bedrock batch inference (CreateModelInvocationJob) reads its input from and writes its "
                      "output to S3 buckets, which this connector does not manage",
    "bedrock_embeddings": "Bedrock batch inference (CreateModelInvocationJob) reads its input from and writes its "
                          "output to S3 buckets, which this connector does not manage",
    "google_vertex": "Vertex AI batch prediction reads its input from and writes its output to Cloud Storage "
                     "buckets or BigQuery, which this connector does not manage",
}
# Shapes whose batch create request takes a completion window (OpenAI's Batch API).
WINDOWED = ("openai_chat_completions", "openai_responses", "azure_openai", "openai_embeddings")


class BatchConfig(BaseModel):
    """Provider batch APIs: about half the price, answers within hours instead of seconds."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: bool = Field(
        False,
        title="Use the provider's batch API",
        description="Submit the rows as provider batches (OpenAI-format, Azure, Anthropic, Gemini) instead of one "
                    "request each; resumable across syncs (see docs/BATCH.md).",
        json_schema_extra={"order": 0},
    )
    wait: bool = Field(
        True,
        title="Wait for the batches",
        description="true: poll until every batch has ended, emitting records as they come. false: submit what is "
                    "not submitted yet, emit the rows whose batches ended (in input order), checkpoint and exit; "
                    "run again (e.g. hourly) to collect the rest.",
        json_schema_extra={"order": 1},
    )
    poll_seconds: float = Field(
        60.0, gt=0, le=3600, title="Seconds between polls",
        description="How often the batches' status is asked for while waiting.",
        json_schema_extra={"order": 2},
    )
    completion_window: str = Field(
        "24h", pattern=r"^[1-9][0-9]*h$", title="Completion window",
        description="OpenAI-format batches only: the window the provider has to answer (OpenAI: 24h; some "
                    "providers accept 48h and more).",
        json_schema_extra={"order": 3},
    )
    max_requests_per_batch: int | None = Field(
        None, gt=0, title="Requests per batch",
        description="At most this many requests in one batch (below the provider's own limit: OpenAI 50,000, "
                    "Anthropic 100,000). Default: the provider's limit.",
        json_schema_extra={"order": 4},
    )


def check_batch(batch: BatchConfig, api_compatibility: str, source: InputConfig, *, stream: bool) -> None:
    """ValueError (worded for the config) when batch mode is on where it cannot work."""
    if not batch.enabled:
        return
    stdin, by_files = source.is_stdin, source.incremental == "files"
    shape = canonical(api_compatibility)
    if shape in NO_BATCH:
        raise ValueError(f"batch.enabled: the {shape} API shape has no batch mode here: {NO_BATCH[shape]}. Turn "
                         f"batch off, or use a shape with a batch API: {', '.join(BATCH_SHAPES)}")
    if shape not in BATCH_SHAPES:
        raise ValueError(f"batch.enabled: the {shape} API shape has no batch mode; use one of "
                         f"{', '.join(BATCH_SHAPES)}")
    if "completion_window" in batch.model_fields_set and shape not in WINDOWED:
        raise ValueError(f"batch.completion_window: the {shape} batch API takes no completion window (Anthropic "
                         "and Gemini set their own); remove it")
    if stdin:
        raise ValueError("batch.enabled: batch mode reads the input again when the answers come back, possibly in "
                         "a later sync, and standard input cannot be read twice; write the rows to a file and "
                         "point input.path at it")
    if stream:
        raise ValueError("batch.enabled: a batch answers whole replies, never a stream; set stream to false")
    if by_files:
        raise ValueError("batch.enabled: input.incremental files is not supported in batch mode yet (its STATE "
                         "lists provider batches by row of the whole input); use input.incremental rows, or turn "
                         "batch off")
