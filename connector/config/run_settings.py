"""How a run behaves: concurrency and rate budgets, retries, error and spend policies, the answer
cache, null cells, the context window, validation retries, fallbacks, prices and TLS.

:class:`RunSettings` holds these fields and their rules; :class:`connector.config.model.SourceConfig`
adds what to ask and where, and is the one config model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PlainValidator, PrivateAttr, WithJsonSchema, model_validator

from connector.config.packing_rules import AUTO_MAX_ROWS, AUTO_OUTPUT_LIMIT, AUTO_WINDOW
from connector.config.sections import CacheConfig, ErrorClass, Price, Strict, TLSConfig
from connector.digits import ascii_int


def _rows_per_request(value: object) -> int | Literal["auto"]:
    """A number of rows, or "auto"; a form's text input gives the number as text ("10"), read as the number.
    One check with one message, where a union of the two types would report both types' errors."""
    if value == "auto":
        return "auto"
    number = ascii_int(value.strip()) if isinstance(value, str) else None
    rows = value if number is None else number
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= 1000:
        raise ValueError(f'must be a whole number from 1 to 1000, or "auto" (got {value!r})')
    return rows


RowsPerRequest = Annotated[
    int | Literal["auto"],
    PlainValidator(_rows_per_request),
    WithJsonSchema({"type": ["integer", "string"], "minimum": 1, "maximum": 1000, "pattern": "^(auto|[0-9]+)$"}),
]

_DEFAULT_FALLBACK_ON: tuple[ErrorClass, ...] = ("rate_limit", "server", "timeout", "context_length")


def _no_models() -> list[str]:
    """fallback_models' default: a function rather than ``list``, whose signature pydantic reads (does
    the factory take the data?) and, a builtin's, is parsed from its text signature by tokenize's
    patterns, compiled on first use: ~1.6 ms of every check and discover (issue 25, cold start)."""
    return []


class RunSettings(Strict):
    """The run-policy fields of the config (see the module doc)."""

    concurrency: int = Field(
        16,
        ge=1,
        le=4096,
        title="Requests in flight",
        description=(
            "Maximum concurrent requests. With adaptive_concurrency the cap halves on 429/503/timeouts "
            "and grows back by one per cap's worth of clean answers."
        ),
        json_schema_extra={"order": 13},
    )
    rows_per_request: RowsPerRequest = Field(
        1,
        title="Rows per request",
        description=(
            "Chat rows packed into one request (openai_chat_completions, azure_openai): the rows' prompts sent "
            "under their row numbers, the answer asked for as one JSON object keyed by them (a JSON schema), "
            "each row's answer, status, cache entry and record still its own; tokens and cost shared out by "
            "length; a row missing or malformed in the answer is asked again alone. For short rows that share "
            "long instructions (put them in system_prompt). The ids are the contract: an answer the model put "
            "under another row's id cannot be detected (docs/PROMISES.md, Several rows per request). 1: one "
            "request a row. \"auto\": as many rows as fit context_window (unset: "
            f"{AUTO_WINDOW:,} tokens assumed) by the first rows' measured lengths and their max_tokens (unset: "
            f"the estimate's default), with the packed max_tokens at most {AUTO_OUTPUT_LIMIT:,} and at most "
            f"{AUTO_MAX_ROWS} rows; said in a LOG line and the dry run; 1 where rows cannot be packed."
        ),
        json_schema_extra={"order": 39},
    )
    # rows_per_request as the run uses it: "auto" is 1 where rows cannot be packed (set by the config's check)
    _packing: int | Literal["auto"] = PrivateAttr(1)

    @property
    def packing(self) -> int | Literal["auto"]:
        """The rows per request a run uses: ``rows_per_request``, but 1 for "auto" where rows cannot be packed."""
        return self._packing

    min_concurrency: int = Field(
        1, ge=1, le=4096, title="Minimum requests in flight", json_schema_extra={"order": 14}
    )
    adaptive_concurrency: bool = Field(
        True,
        title="Adaptive concurrency",
        description="Shrink the cap when the endpoint is overloaded and grow it back while it answers cleanly.",
        json_schema_extra={"order": 15},
    )
    requests_per_minute: int | None = Field(
        None,
        gt=0,
        title="Requests per minute",
        description=("Budget for requests started per minute (token bucket, paced at 99 %); unset: the limit the "
                     "endpoint announces in its rate-limit headers (x-ratelimit-*, anthropic-ratelimit-*), if any."),
        json_schema_extra={"order": 16},
    )
    tokens_per_minute: int | None = Field(
        None,
        gt=0,
        title="Tokens per minute",
        description=(
            "Budget for prompt + completion tokens per minute. Each request is estimated before sending "
            "(prompt length, plus max_tokens) and corrected from the reply's usage. Unset: the limits the "
            "endpoint announces in its headers (Anthropic's input and output token limits apart)."
        ),
        json_schema_extra={"order": 17},
    )
    input_tokens_per_minute: int | None = Field(
        None,
        gt=0,
        title="Input tokens per minute",
        description=("Budget for prompt tokens per minute, where the provider counts input and output apart "
                     "(Anthropic's ITPM). Unset: anthropic-ratelimit-input-tokens-limit, if the endpoint sends it."),
        json_schema_extra={"order": 61},
    )
    output_tokens_per_minute: int | None = Field(
        None,
        gt=0,
        title="Output tokens per minute",
        description=("Budget for output tokens per minute (Anthropic's OTPM): a request counts its max_tokens (or "
                     "the average output so far) until its usage says. Unset: anthropic-ratelimit-output-tokens-limit, "
                     "if the endpoint sends it."),
        json_schema_extra={"order": 62},
    )
    max_retries: int = Field(
        5,
        ge=0,
        le=20,
        title="Retries per row",
        description="On 408/409/429/5xx and connection errors, with exponential backoff and Retry-After.",
        json_schema_extra={"order": 18},
    )
    max_wait_seconds: float = Field(
        300.0,
        ge=0,
        title="Longest wait the endpoint may ask for (seconds)",
        description=(
            "Cap on a pause the endpoint asks for (Retry-After, an exhausted x-ratelimit budget) and on "
            "waiting for local resources. Longer requests end the sync resumably (state, then an error "
            "saying when to run again) instead of waiting."
        ),
        json_schema_extra={"order": 36},
    )
    max_reply_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        title="Largest reply accepted (bytes)",
        description=(
            "Cap on one reply's size, as sent (Content-Length) and as decompressed, streamed or not. A larger "
            "reply (a gzip bomb, a runaway stream) is cut off and that row is an error (bad_reply), so memory "
            "stays bounded. Raise it for very large answers (many embeddings in one request)."
        ),
        json_schema_extra={"order": 38},
    )
    on_request_change: Literal["warn", "fail", "reenrich"] = Field(
        "warn",
        title="When the request changed since the last sync",
        description=(
            "An incremental sync compares what decides an answer (model, prompt, system prompt, request template, "
            "parameters, output schema, API shape, response columns) with the STATE's. warn: read on, with a WARN "
            "naming what changed (earlier rows keep their answers; default); fail: stop with a config error; "
            "reenrich: enrich every row again from row 1."
        ),
        json_schema_extra={"order": 60},
    )
    on_row_error: Literal["emit", "skip", "fail"] = Field(
        "emit",
        title="When a row fails after retries",
        description=(
            "emit: the record is emitted with _status error and the reason (default); skip: it is left out "
            "(and counted in the summary); fail: the sync stops with an error."
        ),
        json_schema_extra={"order": 20},
    )
    max_error_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        title="Maximum error rate",
        description="Stop the sync once more than this fraction of rows failed (checked after 20 rows).",
        json_schema_extra={"order": 21},
    )
    max_requests: int | None = Field(
        None,
        gt=0,
        title="Spend guard: requests",
        description="At most this many requests (retries included) reach the endpoint in one run; then the "
        "run stops cleanly before the next row, after a checkpoint.",
        json_schema_extra={"order": 22},
    )
    max_total_tokens: int | None = Field(
        None,
        gt=0,
        title="Spend guard: tokens",
        description="Send a request only while the tokens used (in + out) plus the estimates of the requests "
        "in flight stay within this; then stop cleanly before the next row, after a checkpoint.",
        json_schema_extra={"order": 23},
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, title="Answer cache", json_schema_extra={"order": 24})
    null_policy: Literal["empty", "skip", "literal"] = Field(
        "empty",
        title="Null cells",
        description=(
            "For a null (or empty) cell the template uses: empty sends an empty string (never the word None); "
            "skip sends nothing and gives the row _status skipped_null; literal sends null_literal."
        ),
        json_schema_extra={"order": 26},
    )
    null_literal: str = Field("", title="Text for null cells", description="With null_policy literal.",
                              json_schema_extra={"order": 27})
    context_window: int | None = Field(
        None,
        gt=0,
        title="Context window (tokens)",
        description=(
            "The model's context size. When set, each prompt is estimated offline (characters per token, "
            "learned from replies' usage) before sending; too_long_policy says what to do with one that "
            "does not fit with max_tokens."
        ),
        json_schema_extra={"order": 28},
    )
    too_long_policy: Literal["truncate", "skip", "fail"] = Field(
        "skip",
        title="Prompts longer than the context window",
        description="truncate cuts truncate_column to fit; skip gives _status skipped_too_long; fail stops.",
        json_schema_extra={"order": 29},
    )
    truncate_column: str | None = Field(
        None, title="Column to truncate", description="With too_long_policy truncate: the long text column.",
        json_schema_extra={"order": 30},
    )
    validation_retries: int = Field(
        1,
        ge=0,
        le=5,
        title="Retries of an invalid structured answer",
        description=(
            "When json_columns (or an output schema) cannot be read from an answer, ask again this many times "
            "with the problem appended to the conversation."
        ),
        json_schema_extra={"order": 31},
    )
    fallback_models: list[str] = Field(
        default_factory=_no_models,
        title="Fallback models",
        description="Tried in order for a row whose error class is in fallback_on; _model says who answered.",
        json_schema_extra={"order": 32},
    )
    fallback_on: list[ErrorClass] = Field(
        default_factory=lambda: list(_DEFAULT_FALLBACK_ON),
        title="Error classes that trigger a fallback",
        json_schema_extra={"order": 33},
    )
    context_windows: dict[str, int] = Field(
        default_factory=dict,
        title="Context window per model",
        description="For fallbacks: a model whose window is smaller than the prompt is passed over.",
        json_schema_extra={"order": 34},
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        title="Prices",
        description=(
            'Per model (or "*" for any), e.g. {"gpt-4o-mini": {"input_per_million": 0.15, '
            '"output_per_million": 0.6}}; fills _cost and the run summary. Optional per model: '
            'cached_input_per_million and cache_write_per_million (prompt-cache tokens; default: the '
            "provider's published ratio to the input price, docs/PROMISES.md#cost-every-token-and-every-cent), "
            'batch_input_per_million, batch_output_per_million or batch_discount. A cost the endpoint reports '
            '(OpenRouter, LiteLLM) is taken instead.'
        ),
        json_schema_extra={"order": 35},
    )
    tls: TLSConfig = Field(default_factory=TLSConfig, title="TLS", json_schema_extra={"order": 25})
    prompt_cache: bool = Field(
        False,
        title="Prompt caching",
        description=(
            "Mark what is the same for every row (the system prompt, tools and output schema) as cacheable where "
            "the API needs it (Anthropic cache_control), so later rows read it from the provider's prompt cache: "
            "cache reads cost 0.1x input, the first write 1.25x. OpenAI, Gemini, vLLM and llama.cpp cache a "
            "repeated prefix by themselves. Put the instructions in system_prompt, the row's values in prompt."
        ),
        json_schema_extra={"order": 37},
    )

    @model_validator(mode="after")
    def _truncation_needs_a_column(self) -> RunSettings:
        if self.context_window and self.too_long_policy == "truncate" and not self.truncate_column:
            raise ValueError("truncate_column: required when too_long_policy is truncate (name the long text column)")
        return self

    @model_validator(mode="after")
    def _concurrency_bounds(self) -> RunSettings:
        if self.min_concurrency > self.concurrency:
            raise ValueError(
                f"min_concurrency ({self.min_concurrency}) is above concurrency ({self.concurrency}); lower it"
            )
        return self
