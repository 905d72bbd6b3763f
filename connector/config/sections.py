"""The nested sections of the config: output columns, generation parameters, cache, TLS, prices.

The input section has its own module (:mod:`connector.config.input`); the whole
config is :class:`connector.config.model.SourceConfig`.
"""

from __future__ import annotations

import ssl
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from connector.errors import ConfigError

ColumnType = Literal["string", "integer", "number", "boolean", "object", "array"]


class Strict(BaseModel):
    """A config section that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class ResponseTemplate(Strict):
    """Which output columns to take from each reply."""

    columns: dict[str, str] = Field(
        default_factory=lambda: {"answer": "choices.0.message.content"},
        title="Output columns",
        description=(
            "Output column name -> dotted path into the chat-completion reply, e.g. "
            "'choices.0.message.content', 'usage.total_tokens', 'choices.0.finish_reason'. "
            "Streamed replies are assembled into the same shape first."
        ),
    )
    @field_validator("columns")
    @classmethod
    def _paths(cls, columns: dict[str, str]) -> dict[str, str]:
        for name, path in columns.items():
            steps = path.split(".")
            if not path.strip() or any(not step or step != step.strip() for step in steps):
                raise ValueError(
                    f"column '{name}': path '{path}' has an empty or padded step; "
                    "write dotted steps such as choices.0.message.content or usage.total_tokens"
                )
        return columns

    json_columns: dict[str, ColumnType] = Field(
        default_factory=dict,
        title="Typed columns from JSON content",
        description=(
            "Parse the message content as a JSON object and expose these keys as typed columns, "
            'e.g. {"sentiment": "string", "score": "number"}.'
        ),
    )


class Parameters(Strict):
    """Generation parameters."""

    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int | None = Field(None, gt=0, description="Upper bound on tokens generated per row.")
    stop: Annotated[
        str | list[str] | None,
        WithJsonSchema({"type": ["string", "array"], "items": {"type": "string"}}),
    ] = Field(None, description="Stop sequence(s).")
    seed: int | None = Field(None, description="Seed, for servers that support reproducible sampling.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = Field(
        None, description='e.g. {"type": "json_object"} or a json_schema format.'
    )
    # Mapped to each API shape's own names (connector/dialects); one a shape cannot express
    # is a config error, never a silent drop.
    max_completion_tokens: int | None = Field(None, gt=0, description="Newer name of max_tokens (reasoning models).")
    tool_choice: Annotated[
        str | dict[str, Any] | None, WithJsonSchema({"type": ["string", "object"]})
    ] = Field(None, description='auto, none, required, or {"type": "function", "function": {"name": "..."}}.')
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(None)
    user: str | None = Field(None, description="End-user id, for the provider's abuse monitoring.")
    metadata: dict[str, str] | None = Field(None, description="Key-value tags stored with the request.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Log-probabilities of the top N tokens.")
    store: bool | None = Field(None, description="Let the provider store the answer (openai_responses: false).")
    service_tier: Literal["auto", "default", "flex", "priority"] | None = Field(
        None, description="OpenAI and Azure: flex answers more slowly at the batch price; priority faster at more.")

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "none", "required"):
            raise ValueError('must be auto, none, required or {"type": "function", "function": {"name": ...}}')
        return value

    def as_body(self) -> dict[str, Any]:
        """The parameters that are set, as request-body fields."""
        return self.model_dump(exclude_none=True)


class CacheConfig(Strict):
    """The answer cache: answers already paid for are never bought again."""

    enabled: bool = Field(True, description="Look answers up before sending, store them before emitting.")
    path: str | None = Field(
        None,
        description="sqlite file. Default: $XDG_CACHE_HOME/source-openai-compatible/answers.sqlite.",
    )
    ttl_seconds: float | None = Field(None, gt=0, description="Ignore cached answers older than this.")


class TLSConfig(Strict):
    """How the endpoint's certificate is checked."""

    verify: bool = Field(True, description="Verify the server certificate. Turn off only for a test server.")
    ca_bundle: str | None = Field(None, description="A PEM file of extra CA certificates (a private CA).")

    def verification(self) -> bool | ssl.SSLContext:
        """What an HTTP client's ``verify``/``ssl`` takes: False, True (the system's CAs) or a context
        trusting ``ca_bundle``; ConfigError when the bundle cannot be loaded."""
        if not (self.verify and self.ca_bundle):
            return self.verify
        try:
            return ssl.create_default_context(cafile=self.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls.ca_bundle: cannot load '{self.ca_bundle}': {exc}") from None


class Price(Strict):
    """Price of one model, in currency units per million tokens; the batch price (provider batch APIs,
    OpenAI's flex tier) given outright or as a discount, else taken to be the normal price. Prompt-cache
    tokens at their own rates when given, else at the API shape's published ratio to the input price."""

    input_per_million: float = Field(..., ge=0, description="Input tokens not read from or written to a "
                                     "prompt cache.")
    output_per_million: float = Field(..., ge=0, description="Output tokens, reasoning included.")
    cached_input_per_million: float | None = Field(
        None, ge=0, description="Input tokens read from the provider's prompt cache. Default: the provider's "
        "published ratio (Anthropic and Gemini 0.1x input, OpenAI at most 0.5x).")
    cache_write_per_million: float | None = Field(
        None, ge=0, description="Input tokens written to the prompt cache. Default: Anthropic 1.25x input "
        "(one-hour writes 2x), others the input price.")
    batch_input_per_million: float | None = Field(None, ge=0, description="Batch price of input tokens.")
    batch_output_per_million: float | None = Field(None, ge=0, description="Batch price of output tokens.")
    batch_discount: float | None = Field(
        None, ge=0, lt=1, description="Or the batch discount off the normal price: 0.5 is half price."
    )

    @property
    def has_batch_price(self) -> bool:
        """The batch price is known (given, or a discount), not assumed to be the normal one."""
        return self.batch_discount is not None or self.batch_input_per_million is not None \
            or self.batch_output_per_million is not None

    def rates(self, batch: bool = False) -> tuple[float, float]:
        """(input, output) per million tokens, at the batch price when ``batch``."""
        if not batch:
            return self.input_per_million, self.output_per_million
        keep = 1.0 - (self.batch_discount or 0.0)
        return (self.input_per_million * keep if self.batch_input_per_million is None else self.batch_input_per_million,
                self.output_per_million * keep if self.batch_output_per_million is None
                else self.batch_output_per_million)

    def input_scale(self, batch: bool = False) -> float:
        """How the batch price scales input tokens (1 without ``batch``): cache rates follow it."""
        if not batch or not self.input_per_million:
            return 1.0
        return self.rates(True)[0] / self.input_per_million


ErrorClass = Literal[
    "rate_limit", "quota", "auth", "timeout", "connection", "server", "bad_request",
    "not_found", "context_length", "content_filter", "bad_reply", "validation",
]
