"""The typed parts of the config, one per stage that uses it: a signature says what a stage depends on.

:func:`parts_of` cuts the validated :class:`~connector.config.model.SourceConfig` into them once,
in the run's preparation (:mod:`connector.pipeline.prepare`); no stage below it sees the whole
config. Each part holds exactly the fields its stage reads, under the config's own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import SecretStr

from connector.config.batch import BatchConfig
from connector.config.embedding_settings import EmbeddingsConfig
from connector.config.endpoint import ApiEndpoint
from connector.config.input import InputConfig
from connector.config.model import SourceConfig
from connector.config.sections import CacheConfig, Parameters, Price, ResponseTemplate, TLSConfig
from connector.config.shape_settings import AzureSettings, BedrockSettings, VertexSettings
from connector.config.task_settings import TaskConfig, task_order


@dataclass(frozen=True, slots=True)
class RequestPart:
    """What the request is: the API shape and URL, the key, model, prompt, parameters and headers
    (the dialects, the request template, the batch APIs)."""

    api_compatibility: str
    endpoint: ApiEndpoint  # the resolved API shape and URL
    api_key: SecretStr | None
    model: str | None
    model_mapping: Mapping[str, str]
    prompt: str | None
    system_prompt: str | None
    request_template: dict[str, Any] | None
    parameters: Parameters
    output_schema: dict[str, Any] | None
    stream: bool
    extra_body: Mapping[str, Any]
    headers: Mapping[str, str]
    timeout: float
    azure: AzureSettings | None
    bedrock: BedrockSettings | None
    vertex: VertexSettings | None
    batch: BatchConfig
    embeddings: EmbeddingsConfig | None = None  # api_compatibility openai_embeddings
    prompt_cache: bool = False  # mark the prefix every row shares as cacheable (Anthropic cache_control)
    tasks: tuple[dict[str, Any], ...] = ()  # the config's tasks as given: part of the request's fingerprint


@dataclass(frozen=True, slots=True)
class ClientPart:
    """How one request is made: its timeout, the retries, the longest wait the endpoint may ask for."""

    timeout: float
    max_retries: int
    max_wait_seconds: float
    max_reply_bytes: int = 64 * 1024 * 1024  # a reply larger than this (decompressed) is the row's error


@dataclass(frozen=True, slots=True)
class OutputPart:
    """What the answer becomes: the response template's columns, the structured-output schema, tools."""

    response_template: ResponseTemplate
    output_schema: dict[str, Any] | None
    tools: bool  # the request template asks for tools: a _tool_calls column
    primary_key: str | None
    dimensions: int | None = None  # embeddings.dimensions: the vector column's fixed length
    tasks: tuple[tuple[str, str, OutputPart], ...] = ()  # each task's name, column prefix, output; dependency order


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard the run may push the endpoint, and the spend guards of one run."""

    concurrency: int
    min_concurrency: int
    adaptive_concurrency: bool
    requests_per_minute: int | None
    tokens_per_minute: int | None
    input_tokens_per_minute: int | None
    output_tokens_per_minute: int | None
    max_retries: int
    max_wait_seconds: float
    max_requests: int | None
    max_total_tokens: int | None
    tls: TLSConfig


@dataclass(frozen=True, slots=True)
class RowPolicy:
    """What the row enricher decides by: nulls, context windows, fallbacks, validation retries, prices."""

    null_policy: Literal["empty", "skip", "literal"]
    null_literal: str
    context_window: int | None
    context_windows: Mapping[str, int]  # per model; the run's model has context_window
    too_long_policy: Literal["truncate", "skip", "fail"]
    truncate_column: str | None
    fallback_models: tuple[str, ...]
    fallback_on: frozenset[str]
    validation_retries: int
    prices: Mapping[str, Price]
    media_columns: Mapping[str, Literal["image", "document"]] = field(default_factory=dict)  # media_columns


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """What the run loop decides by: the stream's name, rows in flight, the error policy, batch mode."""

    stream_name: str
    concurrency: int
    on_row_error: Literal["emit", "skip", "fail"]
    max_error_rate: float | None
    max_retries: int
    batch: BatchConfig
    # Chat rows packed into one request (connector.pipeline.row_packs); "auto" only where they can be packed.
    rows_per_request: int | Literal["auto"] = 1


@dataclass(frozen=True, slots=True)
class Parts:
    """Every part of one config (see the module doc)."""

    request: RequestPart
    client: ClientPart
    output: OutputPart
    limits: Limits
    rows: RowPolicy
    run: RunPolicy
    input: InputConfig
    cache: CacheConfig

    def with_concurrency(self, concurrency: int) -> Parts:
        """The same parts with fewer requests in flight (the open-files limit holds no more)."""
        limits = replace(self.limits, concurrency=concurrency,
                         min_concurrency=min(self.limits.min_concurrency, concurrency))
        return replace(self, limits=limits, run=replace(self.run, concurrency=concurrency))

    def without_validation_retries(self) -> Parts:
        """The same parts, never asking again (an imported results file: nothing is sent)."""
        return replace(self, rows=replace(self.rows, validation_retries=0))


def parts_of(config: SourceConfig) -> Parts:
    """The typed parts of a validated config."""
    windows = dict(config.context_windows)
    if config.model and config.context_window:
        windows.setdefault(config.model, config.context_window)
    request = RequestPart(
        config.api_compatibility, config.endpoint, config.api_key, config.model,
        dict(config.model_mapping), config.prompt, config.system_prompt, config.request_template,
        config.parameters, config.output_schema, config.stream, dict(config.extra_body),
        dict(config.headers), float(config.timeout), config.azure, config.bedrock, config.vertex, config.batch,
        config.embeddings, config.prompt_cache, tuple(t.model_dump(mode="json") for t in config.tasks or ()))
    output = OutputPart(config.response_template, config.output_schema, "tools" in (config.request_template or ()),
                        config.input.primary_key, config.embeddings.dimensions if config.embeddings else None,
                        tuple((t.name, t.prefix, parts_of(task_config(config, t)).output)
                              for t in task_order(config.tasks or [])))
    limits = Limits(config.concurrency, config.min_concurrency, config.adaptive_concurrency,
                    config.requests_per_minute, config.tokens_per_minute, config.input_tokens_per_minute,
                    config.output_tokens_per_minute, config.max_retries,
                    config.max_wait_seconds, config.max_requests, config.max_total_tokens, config.tls)
    rows = RowPolicy(config.null_policy, config.null_literal, config.context_window, windows,
                     config.too_long_policy, config.truncate_column, tuple(m for m in config.fallback_models if m),
                     frozenset(config.fallback_on), config.validation_retries, dict(config.prices),
                     dict(config.media_columns))
    run = RunPolicy(config.stream_name, config.concurrency, config.on_row_error, config.max_error_rate,
                    config.max_retries, config.batch, config.packing)
    client = ClientPart(float(config.timeout), config.max_retries, config.max_wait_seconds, config.max_reply_bytes)
    return Parts(request, client, output, limits, rows, run, config.input, config.cache)


def task_config(config: SourceConfig, task: TaskConfig) -> SourceConfig:
    """The one-task config ``task`` of a config with tasks asks by: its prompt, and its own system prompt,
    model, parameters, output schema, response template and fallback models where it gives them, the
    config's otherwise."""
    return config.model_copy(update={
        "prompt": task.prompt, "system_prompt": task.system_prompt or config.system_prompt,
        "model": task.model or config.model, "parameters": task.parameters or config.parameters,
        "output_schema": config.output_schema if task.output_schema is None else task.output_schema,
        "response_template": task.response_template or config.response_template,
        "fallback_models": config.fallback_models if task.fallback_models is None else task.fallback_models,
        "tasks": None})


def other_models(config: SourceConfig) -> list[tuple[str, SourceConfig]]:
    """With tasks: the one-task config of each task (by name) whose model no task before it asks, the
    first task left out (``check`` probes each of their models)."""
    tasks = [(t.name, task_config(config, t)) for t in task_order(config.tasks or [])]
    seen = {tasks[0][1].model} if tasks else set()
    out = []
    for name, task in tasks[1:]:
        if task.model not in seen:
            seen.add(task.model)
            out.append((name, task))
    return out


def first_task(config: SourceConfig) -> SourceConfig:
    """The config itself, or with tasks, the one-task config of the first task asked (check probes with it)."""
    return task_config(config, task_order(config.tasks)[0]) if config.tasks else config
